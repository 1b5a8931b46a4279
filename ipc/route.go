package ipc

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Endpoints.
const (
	EndpointToken    = "token"
	EndpointRefresh  = "refresh"
	EndpointProfiles = "profiles"
	EndpointHealth   = "health"
	EndpointMetrics  = "metrics"
)

// ValidProfileName reports whether name is a profile name: 1 to 64 ASCII
// letters, digits, '.', '_' or '-', starting with a letter or digit. The
// agent's config validation uses the same rule. (A function, not a
// regexp: every CLI start would pay for compiling one.)
func ValidProfileName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// MaxMinValid bounds the min_valid a caller may ask for.
const MaxMinValid = 24 * time.Hour

// Route is a parsed request line.
type Route struct {
	Endpoint string
	Profile  string
	MinValid time.Duration
}

// routeError is a request that does not fit the protocol.
type routeError struct {
	status int
	code   string
	msg    string
}

func (e *routeError) Error() string { return e.msg }

// ParseRoute maps a method, an (unescaped) path and a raw query to an
// endpoint. It is the whole of the server's input parsing before the
// body, and is fuzzed.
func ParseRoute(method, path, rawQuery string) (Route, error) {
	var r Route
	switch {
	case path == PathHealth:
		r.Endpoint = EndpointHealth
	case path == PathProfiles:
		r.Endpoint = EndpointProfiles
	case path == PathMetrics:
		r.Endpoint = EndpointMetrics
	case strings.HasPrefix(path, PathTokens):
		rest := strings.TrimPrefix(path, PathTokens)
		name, action, hasAction := strings.Cut(rest, "/")
		switch {
		case !hasAction:
			r.Endpoint = EndpointToken
		case action == "refresh":
			r.Endpoint = EndpointRefresh
		default:
			return r, &routeError{http.StatusNotFound, CodeNotFound, fmt.Sprintf("no endpoint %s", path)}
		}
		if !ValidProfileName(name) {
			return r, &routeError{http.StatusBadRequest, CodeInvalidRequest, "profile names are 1-64 letters, digits, '.', '_' or '-'"}
		}
		r.Profile = name
	default:
		return r, &routeError{http.StatusNotFound, CodeNotFound, fmt.Sprintf("no endpoint %s; see /v1/tokens/{profile}, /v1/profiles, /v1/health, /metrics", path)}
	}
	want := http.MethodGet
	if r.Endpoint == EndpointRefresh {
		want = http.MethodPost
	}
	if method != want && !(method == http.MethodHead && want == http.MethodGet) {
		return r, &routeError{http.StatusMethodNotAllowed, CodeMethod, fmt.Sprintf("%s %s: use %s", method, path, want)}
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return r, &routeError{http.StatusBadRequest, CodeInvalidRequest, "malformed query string"}
	}
	for k := range q {
		if k != "min_valid" || (r.Endpoint != EndpointToken && r.Endpoint != EndpointRefresh) {
			return r, &routeError{http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("unknown query parameter %q", k)}
		}
	}
	if v := q.Get("min_valid"); v != "" {
		d, err := parseMinValid(v)
		if err != nil {
			return r, &routeError{http.StatusBadRequest, CodeInvalidRequest, err.Error()}
		}
		r.MinValid = d
	}
	return r, nil
}

// parseMinValid accepts a Go duration ("90s", "2m") or whole seconds ("90").
func parseMinValid(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, serr := strconv.ParseUint(v, 10, 32)
		if serr != nil {
			return 0, fmt.Errorf("min_valid %q: use a duration such as 60s or 5m", v)
		}
		d = time.Duration(secs) * time.Second
	}
	if d < 0 || d > MaxMinValid {
		return 0, fmt.Errorf("min_valid %q: must be between 0 and %v", v, MaxMinValid)
	}
	return d, nil
}
