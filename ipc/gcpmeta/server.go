// Package gcpmeta is a Google Compute Engine metadata server on a
// loopback port, serving one profile as the instance's default service
// account, for google-auth-library and the other Google SDKs pointed at it
// by GCE_METADATA_HOST: they detect it (/computeMetadata/v1/instance, or
// the root), read the project and the account's email, and ask for tokens
// (…/service-accounts/default/token), with no key in the process. The
// caller is identified by the kernel, as on the token endpoint
// (door.TCPCaller), and may use the profile only if the engine says so.
package gcpmeta

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// Flavor is the header every request must carry and every answer carries
// (Metadata-Flavor: Google): a page in a browser cannot set it, and a
// client checks it to know the server is a metadata server.
const (
	FlavorHeader = "Metadata-Flavor"
	FlavorGoogle = "Google"
)

// Prefix is where the metadata lives.
const Prefix = "/computeMetadata/v1/"

// UniverseDomain is the only universe the agent knows of.
const UniverseDomain = "googleapis.com"

// Backend is the engine, as this door needs it.
type Backend interface {
	// Match picks the profile a client means (agent.Agent.Match); the
	// door asks it for its own profile, with the scopes the client asks
	// for, so that the engine's access rules and scope check decide.
	Match(caller *ipc.Caller, q ipc.ClientMatch) (profile string, err error)
	// Token returns a token of the profile for caller, with ipc's
	// sentinel errors.
	Token(ctx context.Context, caller ipc.Caller, profile string) (*ipc.TokenResponse, error)
	// ClientID is the profile's client at the IdP (a service account's
	// email with auth = "jwt_bearer"); "" when there is no such profile.
	ClientID(profile string) string
	// MayUseAny reports whether caller may use any profile.
	MayUseAny(caller ipc.Caller) bool
}

// Config tunes the server; zero values are defaults, except Backend and
// Profile.
type Config struct {
	Backend Backend
	// Profile is the one profile this door serves.
	Profile string
	// Project is the project id it names (gcp_project); "" answers 404.
	Project string
	// Scopes are the profile's scopes, listed as the account's.
	Scopes []string
	// Door names the door in request events and /metrics; default
	// "gcp_metadata".
	Door string
	// Observe, if set, sees every answered request.
	Observe func(door.RequestEvent)
	// Requests, if set, counts token requests for /metrics.
	Requests door.Counter
	// AgentUID is the agent's own user, who may keep a connection.
	AgentUID uint32
	// RequestTimeout bounds one request's wait for a token; default 30s.
	RequestTimeout time.Duration
}

// Server is the metadata server of one profile.
type Server struct {
	*door.Server
	cfg     Config
	timeout time.Duration
	rec     door.Recorder
}

// New returns a server; serve it on a loopback listener of door's (the
// daemon's holdLoopback and door.LimitTCP), which identifies callers.
func New(cfg Config) *Server {
	t := door.Timeouts{Request: cfg.RequestTimeout}.WithDefaults()
	s := &Server{cfg: cfg, timeout: t.Request, rec: door.Recorder{Door: cmp.Or(cfg.Door, "gcp_metadata"), Requests: cfg.Requests, Observe: cfg.Observe}}
	s.Server = door.NewServer(http.HandlerFunc(s.serve), t)
	return s
}

// answer is a metadata answer: a status and a text or JSON body.
type answer struct {
	status      int
	contentType string
	body        []byte
	retryAfter  string // seconds
}

func text(status int, body string) answer {
	return answer{status: status, contentType: "text/plain; charset=utf-8", body: []byte(body)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	ev := s.rec.Event(r)
	defer func() { s.rec.Done(&ev, isToken(ev.Path)) }()
	h := w.Header()
	h.Set(FlavorHeader, FlavorGoogle) // on every answer, errors included
	door.NoStore(w, true)
	if !s.mayKeep(r) {
		h.Set("Connection", "close")
	}
	a := s.route(r, &ev)
	ev.Status = a.status
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	if a.status >= 400 && ev.Reason == "" {
		ev.Code, ev.Reason = "metadata_"+strconv.Itoa(a.status), strings.TrimSpace(string(a.body))
	}
	door.Write(w, a.status, a.contentType, a.body)
}

// route answers one request.
func (s *Server) route(r *http.Request, ev *door.RequestEvent) answer {
	if why := door.LoopbackGuard(r); why != "" {
		return text(http.StatusForbidden, "tokenagent: "+why+"\n")
	}
	if r.Header.Get(FlavorHeader) != FlavorGoogle {
		// As on Compute Engine: a request that does not say it is for
		// the metadata server (a page, a proxy, an SSRF) gets nothing.
		return text(http.StatusForbidden, "Missing Metadata-Flavor:Google header.\n")
	}
	if r.Header.Get("X-Forwarded-For") != "" {
		return text(http.StatusForbidden, "tokenagent: requests through a proxy are refused\n")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return text(http.StatusMethodNotAllowed, "use GET\n")
	}
	path := r.URL.Path
	switch path {
	case "/", "/computeMetadata/", "/computeMetadata":
		// Detection by the root (Python's google-auth pings it).
		return text(http.StatusOK, "computeMetadata/\n")
	case Prefix, strings.TrimSuffix(Prefix, "/"):
		return text(http.StatusOK, "instance/\nproject/\nuniverse/\n")
	case Prefix + "instance", Prefix + "instance/":
		// Detection (gcp-metadata's isAvailable): anyone may learn
		// that a metadata server is here; what it serves is checked.
		return text(http.StatusOK, "service-accounts/\n")
	case Prefix + "universe/universe-domain":
		return text(http.StatusOK, UniverseDomain)
	}
	rest, ok := strings.CutPrefix(path, Prefix)
	if !ok {
		return text(http.StatusNotFound, "not found\n")
	}
	ev.Profile = s.cfg.Profile
	caller, refused := s.identify(r, ev)
	if refused != nil {
		return *refused
	}
	switch {
	case rest == "project/project-id":
		if s.cfg.Project == "" {
			return text(http.StatusNotFound, fmt.Sprintf("tokenagent: profile %q sets no gcp_project\n", s.cfg.Profile))
		}
		return text(http.StatusOK, s.cfg.Project)
	case rest == "instance/service-accounts" || rest == "instance/service-accounts/":
		return text(http.StatusOK, "default/\n"+s.email()+"/\n")
	}
	account, item, ok := strings.Cut(strings.TrimPrefix(rest, "instance/service-accounts/"), "/")
	if !ok || !strings.HasPrefix(rest, "instance/service-accounts/") || (account != "default" && account != s.email()) {
		return text(http.StatusNotFound, "not found\n")
	}
	switch item {
	case "":
		if r.URL.Query().Get("recursive") == "true" {
			// Python's google-auth reads the account this way.
			return jsonAnswer(http.StatusOK, accountInfo{Aliases: []string{"default"}, Email: s.email(), Scopes: s.scopes()})
		}
		return text(http.StatusOK, "aliases\nemail\nscopes\ntoken\n")
	case "email":
		return text(http.StatusOK, s.email())
	case "aliases":
		return text(http.StatusOK, "default\n")
	case "scopes":
		return text(http.StatusOK, strings.Join(s.scopes(), "\n")+"\n")
	case "token":
		return s.token(r, ev, caller)
	}
	return text(http.StatusNotFound, "not found\n")
}

// accountInfo is a service account's directory, ?recursive=true.
type accountInfo struct {
	Aliases []string `json:"aliases"`
	Email   string   `json:"email"`
	Scopes  []string `json:"scopes"`
}

// tokenAnswer is the metadata server's token.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	TokenType   string `json:"token_type"`
}

func jsonAnswer(status int, v any) answer {
	body, _ := json.Marshal(v)
	return answer{status: status, contentType: "application/json", body: append(body, '\n')}
}

// email is the account's email: the profile's client at the IdP.
func (s *Server) email() string {
	return ipc.SafeText(cmp.Or(s.cfg.Backend.ClientID(s.cfg.Profile), s.cfg.Profile))
}

func (s *Server) scopes() []string {
	if s.cfg.Scopes == nil {
		return []string{}
	}
	return s.cfg.Scopes
}

// identify checks that the caller may use the profile, or returns the
// refusal: an unidentified caller is refused, out of resources asked to
// retry.
func (s *Server) identify(r *http.Request, ev *door.RequestEvent) (ipc.Caller, *answer) {
	caller, err := door.CallerFrom(r.Context())
	switch {
	case errors.Is(err, door.ErrNoResources):
		a := text(http.StatusServiceUnavailable, "tokenagent: the agent is busy; retry shortly\n")
		return caller, &a
	case err != nil:
		ev.Detail = fmt.Sprintf("could not identify a caller at %s (%v); refused", r.RemoteAddr, err)
		a := s.forbidden(ev)
		return caller, &a
	}
	if _, err := s.match(&caller, nil); err != nil {
		var e *ipc.Error
		if errors.As(err, &e) && e.Kind == ipc.ErrUnknownProfile {
			ev.Deny(err)
			a := s.forbidden(ev)
			return caller, &a
		}
		a := text(http.StatusInternalServerError, "tokenagent: internal error\n")
		return caller, &a
	}
	return caller, nil
}

// match asks the engine whether caller may have the profile's tokens for
// scopes.
func (s *Server) match(caller *ipc.Caller, scopes []string) (string, error) {
	profile, err := s.cfg.Backend.Match(caller, ipc.ClientMatch{ClientID: s.cfg.Profile, Scopes: scopes})
	if err == nil && profile != s.cfg.Profile {
		// Another profile whose client id is this one's name: not ours.
		return "", &ipc.Error{Kind: ipc.ErrUnknownProfile, Denied: true}
	}
	return profile, err
}

func (s *Server) forbidden(ev *door.RequestEvent) answer {
	ev.Denied = true
	return text(http.StatusForbidden, fmt.Sprintf("tokenagent: this caller may not use profile %q (see its allow list)\n", s.cfg.Profile))
}

// token answers …/service-accounts/default/token[?scopes=a,b].
func (s *Server) token(r *http.Request, ev *door.RequestEvent, caller ipc.Caller) answer {
	var scopes []string
	for _, v := range r.URL.Query()["scopes"] {
		for _, sc := range strings.FieldsFunc(v, func(c rune) bool { return c == ',' || c == ' ' }) {
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	}
	if _, err := s.match(&caller, scopes); err != nil {
		var e *ipc.Error
		if errors.As(err, &e) && e.Code == "invalid_scope" {
			ev.Code, ev.Reason = "invalid_scope", "the requested scopes are not a subset of the profile's"
			return text(http.StatusBadRequest, fmt.Sprintf("tokenagent: scopes %s are not all among profile %q's scopes (%s)\n",
				ipc.SafeText(strings.Join(scopes, ",")), s.cfg.Profile, strings.Join(s.cfg.Scopes, ",")))
		}
		ev.Deny(err)
		return s.forbidden(ev)
	}
	ctx, cancel := door.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	tok, err := s.cfg.Backend.Token(ctx, caller, s.cfg.Profile)
	if err != nil {
		return s.failToken(ev, err)
	}
	ev.TokenSHA256 = door.TokenFingerprint(tok.AccessToken)
	return jsonAnswer(http.StatusOK, tokenAnswer{AccessToken: tok.AccessToken, ExpiresIn: max(tok.ExpiresIn, 0), TokenType: "Bearer"})
}

// failToken answers the engine's error: 403 for a caller refused the
// profile, 503 (with Retry-After) when there is no token to give.
func (s *Server) failToken(ev *door.RequestEvent, err error) answer {
	var e *ipc.Error
	errors.As(err, &e)
	retry := "1"
	if e != nil && e.RetryAfter > 0 {
		retry = strconv.Itoa(int((e.RetryAfter + time.Second - 1) / time.Second))
	}
	var a answer
	switch {
	case errors.Is(err, ipc.ErrUnknownProfile), errors.Is(err, ipc.ErrForbidden):
		ev.Deny(err)
		return s.forbidden(ev)
	case errors.Is(err, ipc.ErrIdPRefused):
		a = text(http.StatusServiceUnavailable, "tokenagent: the agent's identity provider refused the agent ("+e.WireCode()+"); the operator can see why in tokenagent status\n")
		if e.RetryAfter <= 0 {
			return a
		}
	case errors.Is(err, ipc.ErrShuttingDown):
		a = text(http.StatusServiceUnavailable, "tokenagent: the agent is shutting down\n")
	default:
		a = text(http.StatusServiceUnavailable, "tokenagent: the agent has no valid token and cannot reach its identity provider\n")
	}
	a.retryAfter = retry
	return a
}

// isToken reports whether path asks for a token (counted in /metrics).
func isToken(path string) bool {
	return strings.HasPrefix(path, Prefix+"instance/service-accounts/") && strings.HasSuffix(path, "/token")
}

// mayKeep reports whether the caller of r may keep its connection open:
// root, the agent's user, or a caller who may use some profile.
func (s *Server) mayKeep(r *http.Request) bool {
	caller, err := door.CallerFrom(r.Context())
	return err == nil && (caller.UID == 0 || caller.UID == s.cfg.AgentUID || s.cfg.Backend.MayUseAny(caller))
}
