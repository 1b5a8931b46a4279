package azureid

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// Paths and headers of the two protocols.
const (
	// PathAppService is IDENTITY_ENDPOINT's path (App Service's own is
	// /msi/token as well).
	PathAppService = "/msi/token"
	// PathIMDS is the Instance Metadata Service's token path, under
	// AZURE_POD_IDENTITY_AUTHORITY_HOST.
	PathIMDS = "/metadata/identity/oauth2/token"
	// HeaderIdentity carries the App Service secret (IDENTITY_HEADER).
	HeaderIdentity = "X-IDENTITY-HEADER"
	// apiAppService is the one App Service API version served: the one
	// whose answers the SDKs parse as this door writes them.
	apiAppService = "2019-08-01"
)

// Backend is the engine, as this door needs it.
type Backend interface {
	// MatchResource picks the caller's profile for a resource (see
	// agent.Agent.MatchResource): its name and IdP client id. Errors are
	// *ipc.Error: ErrUnknownProfile when none fits, ErrBadRequest when
	// more than one does.
	MatchResource(caller ipc.Caller, q ipc.ResourceMatch) (profile, clientID string, err error)
	// Token returns a token of the profile for caller, with ipc's
	// sentinel errors.
	Token(ctx context.Context, caller ipc.Caller, profile string) (*ipc.TokenResponse, error)
	// MayUseAny reports whether caller may use any profile: a caller who
	// may not gets its answer and no connection to hold on to.
	MayUseAny(caller ipc.Caller) bool
}

// Config tunes the server; zero values are defaults, but Secret is
// required.
type Config struct {
	Backend Backend
	// Secret is the agent's X-IDENTITY-HEADER value: the App Service
	// protocol requires it on every request (compared in constant time).
	// It is not an identity: the kernel's answer about the caller is.
	Secret string
	// Observe, if set, sees every answered request (Door
	// "azure_identity_endpoint").
	Observe func(door.RequestEvent)
	// AgentUID is the agent's own user, who may keep a connection open.
	AgentUID uint32
	// RequestTimeout bounds one request's wait for a token; default 30s.
	RequestTimeout time.Duration
	// Requests, if set, counts token requests for /metrics.
	Requests door.Counter
}

// Server is the loopback Azure managed-identity endpoint.
type Server struct {
	*door.Server
	cfg       Config
	timeout   time.Duration
	rec       door.Recorder
	secretSum [sha256.Size]byte
}

// DoorName names the door in request events, logs and /metrics.
const DoorName = "azure_identity_endpoint"

// New returns a server; serve it on a listener of door.LimitTCP, which
// identifies each caller.
func New(cfg Config) *Server {
	t := door.Timeouts{Request: cfg.RequestTimeout}.WithDefaults()
	s := &Server{cfg: cfg, timeout: t.Request, rec: door.Recorder{Door: DoorName, Requests: cfg.Requests, Observe: cfg.Observe},
		secretSum: sha256.Sum256([]byte(cfg.Secret))}
	s.Server = door.NewServer(http.HandlerFunc(s.serve), t)
	return s
}

// request is a parsed token request of either protocol.
type request struct {
	appService bool // else IMDS
	match      ipc.ResourceMatch
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	ev := s.rec.Event(r)
	protocol, known := route(r.URL.Path)
	defer func() { s.rec.Done(&ev, known) }()
	door.NoStore(w, true)
	caller, credErr := door.CallerFrom(r.Context())
	if credErr != nil || !(caller.UID == 0 || caller.UID == s.cfg.AgentUID || s.cfg.Backend.MayUseAny(caller)) {
		// Nothing here is theirs: they get their answer, not a
		// connection to hold on to (as on the socket).
		w.Header().Set("Connection", "close")
	}
	if why := door.LoopbackGuard(r); why != "" {
		door.Fail(w, &ev, http.StatusForbidden, "invalid_request", why, "")
		return
	}
	if !known {
		door.Fail(w, &ev, http.StatusNotFound, "not_found",
			fmt.Sprintf("no such path: App Service's is %s (IDENTITY_ENDPOINT), IMDS's %s", PathAppService, PathIMDS), "")
		return
	}
	if r.Method != http.MethodGet {
		door.Fail(w, &ev, http.StatusMethodNotAllowed, "invalid_request", "use GET", "")
		return
	}
	req, why := s.parse(r, protocol == PathAppService)
	if why != "" {
		status := http.StatusBadRequest
		if req.appService && why == errHeader {
			status = http.StatusForbidden
		}
		door.Fail(w, &ev, status, "invalid_request", why, "")
		return
	}
	if credErr != nil {
		if errors.Is(credErr, door.ErrNoResources) {
			ev.Detail = fmt.Sprintf("could not identify the caller at %s: %v; raise the agent's file descriptor limit (LimitNOFILE) or lower max_connections", r.RemoteAddr, credErr)
			door.Fail(w, &ev, http.StatusServiceUnavailable, "temporarily_unavailable", "the agent is busy; retry shortly", "1")
			return
		}
		ev.Detail = fmt.Sprintf("could not identify the caller at %s (%v); refused: the Azure identity endpoint serves callers of this host's network namespace only", r.RemoteAddr, credErr)
		door.Fail(w, &ev, http.StatusForbidden, "forbidden", "the agent could not identify this caller", "")
		return
	}
	profile, clientID, err := s.cfg.Backend.MatchResource(caller, req.match)
	if err != nil {
		s.failToken(w, &ev, err)
		return
	}
	ev.Profile = profile
	ctx, cancel := door.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	tok, err := s.cfg.Backend.Token(ctx, caller, profile)
	if err != nil {
		s.failToken(w, &ev, err)
		return
	}
	ev.Status, ev.TokenSHA256 = http.StatusOK, door.TokenFingerprint(tok.AccessToken)
	a := answer{AccessToken: tok.AccessToken, ExpiresOn: tok.ExpiresAt.Unix(), ExpiresIn: max(tok.ExpiresIn, 0),
		Resource: req.match.Resource, ClientID: clientID, TokenType: "Bearer"}
	door.WriteAppended(w, http.StatusOK, a.append)
}

// route says which protocol a path is for: PathAppService or PathIMDS,
// whatever its trailing or doubled slashes (MSAL for Node joins
// AZURE_POD_IDENTITY_AUTHORITY_HOST and the path as strings, so a host
// with a trailing slash makes //metadata/…; Python strips it).
func route(path string) (string, bool) {
	p := "/" + strings.Trim(path, "/")
	switch {
	case strings.EqualFold(p, PathAppService):
		return PathAppService, true
	case p == PathIMDS:
		return PathIMDS, true
	}
	return "", false
}

// errHeader is the App Service protocol's refusal of its secret.
const errHeader = "the X-IDENTITY-HEADER header is missing or not this agent's: set IDENTITY_HEADER as tokenagent env PROFILE --for azure prints it"

// parse reads a token request's parameters and checks the protocol's
// header. A non-empty string is why the request is refused.
func (s *Server) parse(r *http.Request, appService bool) (request, string) {
	req := request{appService: appService}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return req, "unreadable query string"
	}
	for k, v := range q {
		if len(v) > 1 {
			return req, fmt.Sprintf("parameter %s appears more than once", ipc.SafeText(k))
		}
	}
	if appService {
		got := sha256.Sum256([]byte(r.Header.Get(HeaderIdentity)))
		if subtle.ConstantTimeCompare(got[:], s.secretSum[:]) != 1 {
			return req, errHeader
		}
		if v := q.Get("api-version"); v != apiAppService {
			return req, fmt.Sprintf("api-version %q is not served here: use %s", ipc.SafeText(v), apiAppService)
		}
	} else {
		if !strings.EqualFold(r.Header.Get("Metadata"), "true") {
			return req, "Required metadata header not specified: send Metadata: true"
		}
		if q.Get("api-version") == "" {
			return req, "api-version is missing"
		}
	}
	for _, k := range []string{"object_id", "principal_id"} {
		if q.Has(k) {
			return req, fmt.Sprintf("%s is not served: name a user-assigned identity by client_id (a profile's name or client id) or mi_res_id", k)
		}
	}
	req.match = ipc.ResourceMatch{Resource: q.Get("resource"), ClientID: q.Get("client_id"), ResourceID: cmp.Or(q.Get("mi_res_id"), q.Get("msi_res_id"))}
	if req.match.Resource == "" {
		return req, "resource is missing"
	}
	return req, ""
}

// failToken answers an engine error: no profile for the resource (or
// none this caller may use: the same answer) is IMDS's "identity not
// found", a 400 that the SDKs take for "no managed identity here"; the
// agent's trouble with its IdP is a 503 with Retry-After, never the IdP's
// code.
func (s *Server) failToken(w http.ResponseWriter, ev *door.RequestEvent, err error) {
	var e *ipc.Error
	errors.As(err, &e)
	retry := ""
	if e != nil && e.RetryAfter > 0 {
		retry = strconv.Itoa(int((e.RetryAfter + time.Second - 1) / time.Second))
	}
	switch {
	case errors.Is(err, ipc.ErrUnknownProfile), errors.Is(err, ipc.ErrForbidden):
		ev.Deny(err)
		desc := "no profile for this resource that this caller may use"
		if e != nil && errors.Is(err, ipc.ErrUnknownProfile) && e.Description != "" {
			desc = e.Description
		}
		door.Fail(w, ev, http.StatusBadRequest, "invalid_request", desc, "")
	case errors.Is(err, ipc.ErrBadRequest):
		door.Fail(w, ev, http.StatusBadRequest, cmp.Or(e.Code, "invalid_request"), e.Description, "")
	case errors.Is(err, ipc.ErrIdPRefused):
		door.Fail(w, ev, http.StatusServiceUnavailable, "temporarily_unavailable",
			"the agent's identity provider refused the agent ("+e.WireCode()+"); the operator can see why in tokenagent status", cmp.Or(retry, "1"))
	default:
		desc := "the agent has no valid token and cannot reach its identity provider"
		if errors.Is(err, ipc.ErrShuttingDown) {
			desc = "the agent is shutting down"
		}
		door.Fail(w, ev, http.StatusServiceUnavailable, "temporarily_unavailable", desc, cmp.Or(retry, "1"))
	}
}

// answer is a token as both protocols write it: times as decimal strings,
// as IMDS writes them (azure-identity for Python reads expires_on with
// int(), MSAL for Node subtracts it from the time), and the resource
// asked for, under which the SDKs cache the token.
type answer struct {
	AccessToken string `json:"access_token"`
	ClientID    string `json:"client_id"`
	ExpiresIn   int64  `json:"expires_in,string"`
	ExpiresOn   int64  `json:"expires_on,string"`
	Resource    string `json:"resource"`
	TokenType   string `json:"token_type"`
}

// append appends the answer as encoding/json writes it (TestAnswerIsJSON).
func (a *answer) append(b []byte) []byte {
	b = append(b, `{"access_token":`...)
	b = door.AppendJSONString(b, a.AccessToken)
	b = append(b, `,"client_id":`...)
	b = door.AppendJSONString(b, a.ClientID)
	b = append(b, `,"expires_in":"`...)
	b = strconv.AppendInt(b, a.ExpiresIn, 10)
	b = append(b, `","expires_on":"`...)
	b = strconv.AppendInt(b, a.ExpiresOn, 10)
	b = append(b, `","resource":`...)
	b = door.AppendJSONString(b, a.Resource)
	b = append(b, `,"token_type":`...)
	b = door.AppendJSONString(b, a.TokenType)
	return append(b, '}')
}
