package tokenendpoint

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// Paths.
const (
	PathToken        = "/oauth2/token"
	PathMetadata     = "/.well-known/oauth-authorization-server"
	PathOIDCMetadata = "/.well-known/openid-configuration"
)

// Profile is what a request is matched against: a profile's name and what
// its tokens are for.
type Profile struct {
	Name           string
	ClientID       string // the IdP client id
	Scopes         []string
	Audience       string
	Resource       []string
	HasLocalSecret bool
}

// Backend is the engine, as this door needs it.
type Backend interface {
	// Profiles lists the profiles caller may use.
	Profiles(caller ipc.Caller) []Profile
	// AllProfiles lists every profile, for callers the kernel cannot
	// identify (they are matched by local_secret only).
	AllProfiles() []Profile
	// LocalSecretMatches compares secret with the profile's local_secret
	// in constant time.
	LocalSecretMatches(profile, secret string) bool
	// Token returns a token of the profile for caller, with ipc's
	// sentinel errors.
	Token(ctx context.Context, caller ipc.Caller, profile string) (*ipc.TokenResponse, error)
}

// Config tunes the server; zero values are defaults.
type Config struct {
	Backend Backend
	// Observe, if set, sees every answered request (Door "token_endpoint").
	Observe func(door.RequestEvent)
	// AgentUID is the agent's own user: a caller the kernel cannot
	// identify but whose local_secret matches is served as it.
	AgentUID uint32
	// RequestTimeout bounds one request's wait for a token; default 30s.
	RequestTimeout time.Duration
	// Requests, if set, counts answered requests (door "token_endpoint")
	// for /metrics (a *metrics.Requests).
	Requests door.Counter
}

// Server is the loopback token endpoint.
type Server struct {
	*door.Server
	cfg     Config
	timeout time.Duration
	rec     door.Recorder
}

// New returns a server; serve it on Listen's listener.
func New(cfg Config) *Server {
	t := door.Timeouts{Request: cfg.RequestTimeout}.WithDefaults()
	s := &Server{cfg: cfg, timeout: t.Request, rec: door.Recorder{Door: "token_endpoint", Requests: cfg.Requests, Observe: cfg.Observe}}
	mux := http.NewServeMux()
	mux.HandleFunc(PathToken, s.serveToken)
	mux.HandleFunc(PathMetadata, s.serveMetadata)
	mux.HandleFunc(PathOIDCMetadata, s.serveMetadata)
	s.Server = door.NewServer(s.guard(mux), t)
	return s
}

// Listen opens the TCP listener at addr (a loopback address) with the
// socket's connection caps, identifying each caller by the uid that owns
// the client end of the connection (door.TCPCaller).
func Listen(addr string, lc door.ListenConfig) (net.Listener, error) {
	return door.ListenLoopback("token_endpoint", addr, lc)
}

// guard refuses what a browser page could send (door.LoopbackGuard) and
// sets the headers every answer carries.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		if why := door.LoopbackGuard(r); why != "" {
			ev := s.rec.Event(r)
			s.fail(w, &ev, http.StatusForbidden, "invalid_request", why, "")
			s.done(&ev)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// done ends a request's event; token requests count in /metrics.
func (s *Server) done(ev *door.RequestEvent) { s.rec.Done(ev, ev.Path == PathToken) }

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	ev := s.rec.Event(r)
	defer s.done(&ev)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.fail(w, &ev, http.StatusMethodNotAllowed, "invalid_request", "use GET", "")
		return
	}
	base := "http://" + r.Host
	ev.Status = http.StatusOK
	door.WriteJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"token_endpoint":                        base + PathToken,
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"response_types_supported":              []string{"token"},
	})
}

// request is a parsed token request.
type request struct {
	clientID, secret string
	basic            bool // the client authenticated with HTTP Basic
	scopes           []string
	audience         string
	resource         []string
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	ev := s.rec.Event(r)
	defer s.done(&ev)
	if r.Method != http.MethodPost {
		s.fail(w, &ev, http.StatusMethodNotAllowed, "invalid_request", "use POST with a form-encoded body (RFC 6749 §4.4)", "")
		return
	}
	req, code, why := parseRequest(w, r)
	if code != "" {
		s.fail(w, &ev, http.StatusBadRequest, code, why, "")
		return
	}
	caller, credErr := door.CallerFrom(r.Context())
	var candidates []Profile
	if credErr == nil {
		candidates = s.cfg.Backend.Profiles(caller)
	} else {
		// The kernel cannot say who this is (another network namespace):
		// only a profile's local_secret can vouch for the caller.
		for _, p := range s.cfg.Backend.AllProfiles() {
			if p.HasLocalSecret && (p.Name == req.clientID || p.ClientID == req.clientID) && s.cfg.Backend.LocalSecretMatches(p.Name, req.secret) {
				candidates = append(candidates, p)
			}
		}
		caller = ipc.Caller{UID: s.cfg.AgentUID, GID: ^uint32(0)}
	}
	profile, status, code, why := match(candidates, req)
	if code != "" {
		if code == "invalid_client" && req.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="tokenagent"`)
		}
		if code == "invalid_client" {
			ev.Denied = true
		}
		s.fail(w, &ev, status, code, why, "")
		return
	}
	ev.Profile = profile.Name
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	tok, err := s.cfg.Backend.Token(ctx, caller, profile.Name)
	if err != nil {
		s.failToken(w, &ev, err)
		return
	}
	ev.Status, ev.TokenSHA256 = http.StatusOK, ipc.Fingerprint(tok.AccessToken)
	answer := map[string]any{"access_token": tok.AccessToken, "token_type": "Bearer", "expires_in": max(tok.ExpiresIn, 0)}
	if tok.Scope != "" {
		answer["scope"] = tok.Scope
	}
	door.WriteJSON(w, http.StatusOK, answer)
}

// parseRequest reads the form and the client authentication (RFC 6749
// §2.3.1 and §4.4). A non-empty code is the error to answer with.
func parseRequest(w http.ResponseWriter, r *http.Request) (request, string, string) {
	var req request
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return req, "invalid_request", "the body must be application/x-www-form-urlencoded"
	}
	if err := r.ParseForm(); err != nil {
		return req, "invalid_request", "unreadable form"
	}
	form := r.PostForm
	for _, k := range []string{"grant_type", "client_id", "client_secret", "scope", "audience"} {
		if len(form[k]) > 1 {
			return req, "invalid_request", fmt.Sprintf("parameter %s appears more than once", k)
		}
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		return req, "unsupported_grant_type", "only grant_type=client_credentials is served here"
	}
	if user, pass, ok := r.BasicAuth(); ok {
		if form.Has("client_secret") {
			return req, "invalid_request", "use one client authentication method, not HTTP Basic and client_secret together"
		}
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return req, "invalid_request", "the Basic credentials are not form-urlencoded (RFC 6749 §2.3.1)"
		}
		if form.Has("client_id") && form.Get("client_id") != id {
			return req, "invalid_request", "client_id in the body differs from the Basic credentials"
		}
		req.clientID, req.secret, req.basic = id, secret, true
	} else if r.Header.Get("Authorization") != "" {
		return req, "invalid_request", "only HTTP Basic client authentication is accepted in Authorization"
	} else {
		req.clientID, req.secret = form.Get("client_id"), form.Get("client_secret")
	}
	if req.clientID == "" {
		return req, "invalid_request", "client_id is missing: name a profile, or its client id"
	}
	req.scopes = strings.Fields(form.Get("scope"))
	req.audience = form.Get("audience")
	req.resource = form["resource"]
	return req, "", ""
}

// match picks the one profile a request means: client_id names a profile,
// or is the client id of exactly one profile whose tokens satisfy the
// requested scope (a subset), audience and resource (equal). A token
// minted for other parameters is never handed out.
func match(candidates []Profile, req request) (Profile, int, string, string) {
	var named []Profile
	for _, p := range candidates {
		if p.Name == req.clientID {
			named = []Profile{p}
			break
		}
		if p.ClientID == req.clientID {
			named = append(named, p)
		}
	}
	if len(named) == 0 {
		return Profile{}, http.StatusUnauthorized, "invalid_client",
			fmt.Sprintf("no profile %q (by name or client id) that this caller may use", req.clientID)
	}
	var fits []Profile
	scopeMiss := false
	for _, p := range named {
		if !targetFits(p, req) {
			continue
		}
		if !scopeFits(p, req) {
			scopeMiss = true
			continue
		}
		fits = append(fits, p)
	}
	switch {
	case len(fits) == 1:
		return fits[0], 0, "", ""
	case len(fits) > 1:
		names := make([]string, len(fits))
		for i, p := range fits {
			names[i] = p.Name
		}
		return Profile{}, http.StatusBadRequest, "invalid_request",
			fmt.Sprintf("client id %q fits profiles %s; use a profile name as client_id", req.clientID, strings.Join(names, ", "))
	case scopeMiss:
		return Profile{}, http.StatusBadRequest, "invalid_scope", "the requested scope is not a subset of the profile's scopes"
	}
	return Profile{}, http.StatusBadRequest, "invalid_target", "the requested audience or resource is not the profile's"
}

func scopeFits(p Profile, req request) bool {
	for _, sc := range req.scopes {
		if !slices.Contains(p.Scopes, sc) {
			return false
		}
	}
	return true
}

func targetFits(p Profile, req request) bool {
	if req.audience != "" && req.audience != p.Audience {
		return false
	}
	if len(req.resource) > 0 {
		a, b := slices.Clone(req.resource), slices.Clone(p.Resource)
		slices.Sort(a)
		slices.Sort(b)
		return slices.Equal(slices.Compact(a), slices.Compact(b))
	}
	return true
}

// failToken answers an engine error the way OAuth clients understand: the
// agent's own trouble with its IdP is a 503 temporarily_unavailable (the
// client can do nothing about it but retry), never the IdP's code, which a
// client would take for a verdict on its own credentials.
func (s *Server) failToken(w http.ResponseWriter, ev *door.RequestEvent, err error) {
	var e *ipc.Error
	errors.As(err, &e)
	retry := ""
	if e != nil && e.RetryAfter > 0 {
		retry = strconv.Itoa(int((e.RetryAfter + time.Second - 1) / time.Second))
	}
	switch {
	case errors.Is(err, ipc.ErrUnknownProfile), errors.Is(err, ipc.ErrForbidden):
		ev.Denied = e != nil && e.Denied
		s.fail(w, ev, http.StatusUnauthorized, "invalid_client", "no such profile for this caller", "")
	case errors.Is(err, ipc.ErrIdPRefused):
		s.fail(w, ev, http.StatusServiceUnavailable, "temporarily_unavailable",
			"the agent's identity provider refused the agent ("+e.WireCode()+"); the operator can see why in tokenagent status", retry)
	default:
		desc := "the agent has no valid token and cannot reach its identity provider"
		if errors.Is(err, ipc.ErrShuttingDown) {
			desc = "the agent is shutting down"
		}
		s.fail(w, ev, http.StatusServiceUnavailable, "temporarily_unavailable", desc, cmp.Or(retry, "1"))
	}
}

func (s *Server) fail(w http.ResponseWriter, ev *door.RequestEvent, status int, code, description, retryAfter string) {
	ev.Status, ev.Code, ev.Reason = status, code, description
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	door.WriteJSON(w, status, map[string]string{"error": code, "error_description": description})
}
