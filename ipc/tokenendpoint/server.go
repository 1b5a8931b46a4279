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

// tokenPathAliases answer as PathToken: where OAuth client code that
// builds its token URL from an issuer looks — Okta's org authorization
// server (${ISSUER}/v1/token), its default custom one (issuer
// …/oauth2/default) and Auth0's (/oauth/token). The metadata names
// PathToken.
var tokenPathAliases = []string{"/v1/token", oktaDefault + "/v1/token", "/oauth/token"}

// oktaDefault is the path of Okta's default custom authorization server,
// an issuer of its own: its metadata is under it too.
const oktaDefault = "/oauth2/default"

// isTokenPath reports whether path is the token endpoint's, or an alias.
func isTokenPath(path string) bool {
	return path == PathToken || slices.Contains(tokenPathAliases, path)
}

// Backend is the engine, as this door needs it.
type Backend interface {
	// Match picks the profile a client means (see agent.Agent.Match);
	// caller is nil when the kernel cannot say who is asking. Errors are
	// *ipc.Error: ErrUnknownProfile for invalid_client, ErrBadRequest
	// with the OAuth code otherwise.
	Match(caller *ipc.Caller, q ipc.ClientMatch) (profile string, err error)
	// Token returns a token of the profile for caller, with ipc's
	// sentinel errors.
	Token(ctx context.Context, caller ipc.Caller, profile string) (*ipc.TokenResponse, error)
	// MayUseAny reports whether caller may use any profile: a caller who
	// may not gets its answer and no connection to hold on to.
	MayUseAny(caller ipc.Caller) bool
}

// tokenAnswer is a successful answer (RFC 6749 §5.1).
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
	TokenType   string `json:"token_type"`
}

// append appends the answer as encoding/json writes it, byte for byte
// (TestTokenAnswerIsJSON), with none of its reflection.
func (t *tokenAnswer) append(b []byte) []byte {
	b = append(b, `{"access_token":`...)
	b = door.AppendJSONString(b, t.AccessToken)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, t.ExpiresIn, 10)
	if t.Scope != "" {
		b = append(b, `,"scope":`...)
		b = door.AppendJSONString(b, t.Scope)
	}
	b = append(b, `,"token_type":`...)
	b = door.AppendJSONString(b, t.TokenType)
	return append(b, '}')
}

// pathJWKS is the metadata's jwks_uri: an empty key set, since the
// agent signs nothing (its tokens are the IdP's; MSAL wants the field).
const pathJWKS = "/jwks"

// metadata is the RFC 8414 document (and OpenID Connect Discovery's:
// MSAL wants an authorization_endpoint, which the agent does not serve,
// and a jwks_uri).
type metadata struct {
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	GrantTypes            []string `json:"grant_types_supported"`
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	ResponseTypes         []string `json:"response_types_supported"`
	TokenEndpoint         string   `json:"token_endpoint"`
	TokenAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
}

// Config tunes the server; zero values are defaults.
type Config struct {
	Backend Backend
	// Observe, if set, sees every answered request (Door "token_endpoint",
	// or Door).
	Observe func(door.RequestEvent)
	// Door names the door in request events and /metrics; default
	// "token_endpoint" ("token_endpoint_https" for the TLS one).
	Door string
	// AgentUID is the agent's own user: a caller the kernel cannot
	// identify but whose local_secret matches is served as it.
	AgentUID uint32
	// UnidentifiedByLocalSecret says that callers the kernel cannot
	// identify are expected (they come from another network namespace:
	// the configuration's token_endpoint_unidentified = "local_secret"),
	// and may use a profile by its local_secret alone. Otherwise such a
	// caller is a failure to identify and is refused, except where the
	// platform never identifies TCP callers (door.TCPIdentifies false).
	UnidentifiedByLocalSecret bool
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
	// wrongSecrets slows down guessing local secrets.
	wrongSecrets secretBackoff
}

// New returns a server; serve it on Listen's listener.
func New(cfg Config) *Server {
	t := door.Timeouts{Request: cfg.RequestTimeout}.WithDefaults()
	s := &Server{cfg: cfg, timeout: t.Request, rec: door.Recorder{Door: cmp.Or(cfg.Door, "token_endpoint"), Requests: cfg.Requests, Observe: cfg.Observe}}
	mux := http.NewServeMux()
	mux.HandleFunc(PathToken, s.serveToken)
	for _, alias := range tokenPathAliases {
		mux.HandleFunc(alias, s.serveToken)
	}
	for _, issuer := range []string{"", oktaDefault} {
		mux.HandleFunc(issuer+PathMetadata, s.serveMetadata)
		mux.HandleFunc(issuer+PathOIDCMetadata, s.serveMetadata)
	}
	// MSAL's authority is https://HOST/TENANT: it reads
	// TENANT/v2.0/.well-known/openid-configuration (Entra's shape), or
	// TENANT/.well-known/openid-configuration in its OIDC protocol mode.
	mux.HandleFunc("/{tenant}/v2.0"+PathOIDCMetadata, s.serveMetadata)
	mux.HandleFunc("/{tenant}"+PathOIDCMetadata, s.serveMetadata)
	mux.HandleFunc(pathJWKS, s.serveJWKS)
	s.Server = door.NewServer(s.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PathToken { // every token request: no pattern matching
			s.serveToken(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})), t)
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
		door.NoStore(w, true)
		if !s.mayKeep(r) {
			// Nothing here is theirs: they get their answer, not a
			// connection to hold on to (as on the socket).
			w.Header().Set("Connection", "close")
		}
		if why := door.LoopbackGuard(r); why != "" {
			ev := s.rec.Event(r)
			door.Fail(w, &ev, http.StatusForbidden, "invalid_request", why, "")
			s.done(&ev)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// mayKeep reports whether the caller of r may keep its connection open
// between requests: root, the agent's user, a caller who may use some
// profile, or an unidentified caller who may present a local_secret.
func (s *Server) mayKeep(r *http.Request) bool {
	caller, err := door.CallerFrom(r.Context())
	if err != nil {
		return s.secretOnly() && !errors.Is(err, door.ErrNoResources)
	}
	return caller.UID == 0 || caller.UID == s.cfg.AgentUID || s.cfg.Backend.MayUseAny(caller)
}

// secretOnly reports whether a caller nobody can identify may use a
// profile by its local_secret.
func (s *Server) secretOnly() bool { return s.cfg.UnidentifiedByLocalSecret || !door.TCPIdentifies }

// done ends a request's event; token requests count in /metrics.
func (s *Server) done(ev *door.RequestEvent) { s.rec.Done(ev, isTokenPath(ev.Path)) }

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	ev := s.rec.Event(r)
	defer s.done(&ev)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		door.Fail(w, &ev, http.StatusMethodNotAllowed, "invalid_request", "use GET", "")
		return
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	base := scheme + r.Host
	// The issuer is where the document was asked for (RFC 8414 §3.3):
	// the endpoint's root, or under it Okta's default authorization
	// server or an MSAL authority's tenant.
	issuer := base + strings.TrimSuffix(strings.TrimSuffix(r.URL.Path, PathMetadata), PathOIDCMetadata)
	ev.Status = http.StatusOK
	door.WriteJSON(w, http.StatusOK, metadata{
		AuthorizationEndpoint: issuer + "/authorize", // not served: client credentials need none
		Issuer:                issuer,
		JWKSURI:               base + pathJWKS,
		TokenEndpoint:         base + PathToken,
		GrantTypes:            []string{"client_credentials"},
		TokenAuthMethods:      []string{"client_secret_basic", "client_secret_post", "none"},
		ResponseTypes:         []string{"token"},
	})
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	ev := s.rec.Event(r)
	defer s.done(&ev)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		door.Fail(w, &ev, http.StatusMethodNotAllowed, "invalid_request", "use GET", "")
		return
	}
	ev.Status = http.StatusOK
	door.WriteJSON(w, http.StatusOK, struct {
		Keys []struct{} `json:"keys"`
	}{Keys: []struct{}{}})
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
		door.Fail(w, &ev, http.StatusMethodNotAllowed, "invalid_request", "use POST with a form-encoded body (RFC 6749 §4.4)", "")
		return
	}
	req, code, why := parseRequest(w, r)
	if code != "" {
		door.Fail(w, &ev, http.StatusBadRequest, code, why, "")
		return
	}
	q := ipc.ClientMatch{ClientID: req.clientID, Secret: req.secret, Scopes: req.scopes, Audience: req.audience, Resource: req.resource}
	caller, credErr := door.CallerFrom(r.Context())
	var profile string
	var err error
	if credErr == nil {
		profile, err = s.cfg.Backend.Match(&caller, q)
	} else {
		var ok bool
		if profile, ok = s.matchUnidentified(w, r, &ev, req, q, credErr); !ok {
			return
		}
		caller = ipc.Caller{UID: s.cfg.AgentUID, GID: ^uint32(0)}
	}
	if err != nil {
		e := asError(err)
		if e.Kind == ipc.ErrUnknownProfile {
			s.refuseClient(w, &ev, req, e.Description)
			return
		}
		door.Fail(w, &ev, http.StatusBadRequest, cmp.Or(e.Code, "invalid_request"), e.Description, "")
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
	answer := tokenAnswer{AccessToken: tok.AccessToken, TokenType: "Bearer", ExpiresIn: max(tok.ExpiresIn, 0), Scope: tok.Scope}
	door.WriteAppended(w, http.StatusOK, answer.append)
}

// refuseClient answers invalid_client (RFC 6749 §5.2).
func (s *Server) refuseClient(w http.ResponseWriter, ev *door.RequestEvent, req request, description string) {
	if req.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="tokenagent"`)
	}
	ev.Denied = true
	door.Fail(w, ev, http.StatusUnauthorized, "invalid_client", description, "")
}

// matchUnidentified picks the profile of a caller nobody could identify
// (credErr says why), or answers the request itself and returns false.
// Out of resources, the caller is asked to retry (503): a 401 would be
// taken for a verdict on its credentials. Otherwise only a local_secret
// vouches for it, and only where the configuration expects such callers;
// wrong secrets are slowed down per client_id (secretBackoff), the
// attempts refused meanwhile answered 429 without a look at the secret.
// Why a caller is refused goes to the log (ev.Detail), never to it.
func (s *Server) matchUnidentified(w http.ResponseWriter, r *http.Request, ev *door.RequestEvent, req request, q ipc.ClientMatch, credErr error) (string, bool) {
	where := fmt.Sprintf("a caller at %s to %s", r.RemoteAddr, localAddr(r))
	switch {
	case errors.Is(credErr, door.ErrNoResources):
		ev.Detail = fmt.Sprintf("could not identify %s: %v; raise the agent's file descriptor limit (LimitNOFILE) or lower max_connections", where, credErr)
		door.Fail(w, ev, http.StatusServiceUnavailable, "temporarily_unavailable", "the agent is busy; retry shortly", "1")
		return "", false
	case !s.secretOnly():
		ev.Detail = fmt.Sprintf("could not identify %s (%v); refused. If callers come from another network namespace (a container), "+
			`set token_endpoint_unidentified = "local_secret" and give them the profile's local_secret`, where, credErr)
		s.refuseClient(w, ev, req, "no such profile for this caller")
		return "", false
	}
	source := "client_id " + strconv.Quote(ipc.SafeText(req.clientID))
	now := time.Now()
	if wait := s.wrongSecrets.wait(source, now); wait > 0 {
		door.Fail(w, ev, http.StatusTooManyRequests, "slow_down", "too many wrong client secrets for this client; retry later",
			strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		return "", false
	}
	profile, err := s.cfg.Backend.Match(nil, q)
	if err == nil {
		s.wrongSecrets.succeeded(source)
		return profile, true
	}
	e := asError(err)
	if e.Kind != ipc.ErrUnknownProfile {
		door.Fail(w, ev, http.StatusBadRequest, cmp.Or(e.Code, "invalid_request"), e.Description, "")
		return "", false
	}
	ev.Detail = fmt.Sprintf("%s (unidentified: %v) sent no local_secret of a profile it names", where, credErr)
	if backoff, failures := s.wrongSecrets.failed(source, now); backoff > 0 {
		ev.Detail = fmt.Sprintf("%d wrong local secrets in a row for %s from unidentified callers (the latest from %s); its attempts are refused for %s "+
			"(429, logged at debug). If this is not an attack, give the client the profile's local_secret", failures, source, r.RemoteAddr, backoff)
	}
	s.refuseClient(w, ev, req, e.Description)
	return "", false
}

// localAddr is the door's address a request came to.
func localAddr(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return "the token endpoint"
}

// asError is err as an *ipc.Error; one the engine did not make is
// internal.
func asError(err error) *ipc.Error {
	var e *ipc.Error
	if errors.As(err, &e) {
		return e
	}
	return &ipc.Error{Description: "internal error"}
}

// parseRequest reads the form and the client authentication (RFC 6749
// §2.3.1 and §4.4). A non-empty code is the error to answer with.
func parseRequest(w http.ResponseWriter, r *http.Request) (request, string, string) {
	var req request
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return req, "invalid_request", "the body must be application/x-www-form-urlencoded"
	}
	form, err := readForm(r)
	if err != nil {
		return req, "invalid_request", "unreadable form"
	}
	for _, k := range []string{"grant_type", "client_id", "client_secret", "scope", "audience"} {
		if form.count(k) > 1 {
			return req, "invalid_request", fmt.Sprintf("parameter %s appears more than once", k)
		}
	}
	if gt := form.get("grant_type"); gt != "client_credentials" {
		return req, "unsupported_grant_type", "only grant_type=client_credentials is served here"
	}
	if user, pass, ok := r.BasicAuth(); ok {
		if form.has("client_secret") {
			return req, "invalid_request", "use one client authentication method, not HTTP Basic and client_secret together"
		}
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return req, "invalid_request", "the Basic credentials are not form-urlencoded (RFC 6749 §2.3.1)"
		}
		if form.has("client_id") && form.get("client_id") != id {
			return req, "invalid_request", "client_id in the body differs from the Basic credentials"
		}
		req.clientID, req.secret, req.basic = id, secret, true
	} else if r.Header.Get("Authorization") != "" {
		return req, "invalid_request", "only HTTP Basic client authentication is accepted in Authorization"
	} else {
		req.clientID, req.secret = form.get("client_id"), form.get("client_secret")
	}
	if req.clientID == "" {
		return req, "invalid_request", "client_id is missing: name a profile, or its client id"
	}
	req.scopes = strings.Fields(form.get("scope"))
	req.audience = form.get("audience")
	req.resource = form.all("resource")
	return req, "", ""
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
		ev.Deny(err)
		door.Fail(w, ev, http.StatusUnauthorized, "invalid_client", "no such profile for this caller", "")
	case errors.Is(err, ipc.ErrIdPRefused):
		door.Fail(w, ev, http.StatusServiceUnavailable, "temporarily_unavailable",
			"the agent's identity provider refused the agent ("+e.WireCode()+"); the operator can see why in tokenagent status", retry)
	default:
		desc := "the agent has no valid token and cannot reach its identity provider"
		if errors.Is(err, ipc.ErrShuttingDown) {
			desc = "the agent is shutting down"
		}
		door.Fail(w, ev, http.StatusServiceUnavailable, "temporarily_unavailable", desc, cmp.Or(retry, "1"))
	}
}
