package localapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// Endpoints.
const (
	EndpointToken    = "token"
	EndpointRefresh  = "refresh"
	EndpointProfiles = "profiles"
	EndpointHealth   = "health"
	EndpointMetrics  = "metrics"
	EndpointDebug    = "debug"
)

// Route is a parsed request line.
type Route struct {
	Endpoint string
	Profile  string
	MinValid time.Duration
}

// badRequest is a request that does not fit the protocol.
func badRequest(code, description string) *ipc.Error {
	return &ipc.Error{Kind: ipc.ErrBadRequest, Code: code, Description: description}
}

// notFound is a request for no endpoint, or with the wrong method (code
// CodeMethod: 405).
func notFound(code, description string) *ipc.Error {
	return &ipc.Error{Kind: ipc.ErrNotFound, Code: code, Description: description}
}

// ParseRoute maps a method, an (unescaped) path and a raw query to an
// endpoint. It is the whole of the server's input parsing before the
// body, and is fuzzed.
func ParseRoute(method, path, rawQuery string) (Route, error) {
	var r Route
	switch {
	case path == ipc.PathHealth:
		r.Endpoint = EndpointHealth
	case path == ipc.PathProfiles:
		r.Endpoint = EndpointProfiles
	case path == ipc.PathMetrics:
		r.Endpoint = EndpointMetrics
	case strings.HasPrefix(path, ipc.PathDebug):
		// net/http/pprof's own parameters (seconds, debug, gc) follow.
		r.Endpoint = EndpointDebug
		if method != http.MethodGet {
			return r, notFound(ipc.CodeMethod, fmt.Sprintf("%s %s: use GET", method, path))
		}
		return r, nil
	case strings.HasPrefix(path, ipc.PathTokens):
		rest := strings.TrimPrefix(path, ipc.PathTokens)
		name, action, hasAction := strings.Cut(rest, "/")
		switch {
		case !hasAction:
			r.Endpoint = EndpointToken
		case action == "refresh":
			r.Endpoint = EndpointRefresh
		default:
			return r, notFound(ipc.CodeNotFound, fmt.Sprintf("no endpoint %s", path))
		}
		if !ipc.ValidProfileName(name) {
			return r, badRequest(ipc.CodeInvalidRequest, "profile names are 1-64 letters, digits, '.', '_' or '-'")
		}
		r.Profile = name
	default:
		return r, notFound(ipc.CodeNotFound, fmt.Sprintf("no endpoint %s; see /v1/tokens/{profile}, /v1/profiles, /v1/health, /metrics", path))
	}
	want := http.MethodGet
	if r.Endpoint == EndpointRefresh {
		want = http.MethodPost
	}
	if method != want && !(method == http.MethodHead && want == http.MethodGet) {
		return r, notFound(ipc.CodeMethod, fmt.Sprintf("%s %s: use %s", method, path, want))
	}
	if rawQuery == "" {
		return r, nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return r, badRequest(ipc.CodeInvalidRequest, "malformed query string")
	}
	for k := range q {
		if k != "min_valid" || (r.Endpoint != EndpointToken && r.Endpoint != EndpointRefresh) {
			return r, badRequest(ipc.CodeInvalidRequest, fmt.Sprintf("unknown query parameter %q", k))
		}
	}
	if v := q.Get("min_valid"); v != "" {
		d, err := ipc.ParseMinValid(v)
		if err != nil {
			return r, badRequest(ipc.CodeInvalidRequest, err.Error())
		}
		r.MinValid = d
	}
	return r, nil
}
