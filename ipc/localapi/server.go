// Package localapi is the socket's handler: tokenagent's socket protocol
// (package ipc) over HTTP/1.1, a pure parser of the request line
// (ParseRoute) and a map from endpoint to handler, over the small Backend
// interface that the engine implements. The listener, the caller's
// identity, the browser guard and request events are package door's;
// the shared sentinel errors become HTTP statuses through ipc.StatusOf;
// /metrics is package metrics' writer.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
	"github.com/tokenagent/tokenagent/ipc/metrics"
)

// TokenRequest is what a caller asks of the Backend.
type TokenRequest struct {
	Profile string
	// MinValid is the least remaining validity the caller accepts.
	MinValid time.Duration
	// Refresh marks POST …/refresh; RejectedSHA256 is its optional report.
	Refresh        bool
	RejectedSHA256 string
}

// Backend is what the server serves. Access control is the backend's: it
// knows which caller may use which profile, and answers with the sentinel
// errors of package ipc.
type Backend interface {
	// Token returns a token for the caller, or an error whose kind is one
	// of ipc's sentinels (an *ipc.Error carries code and Retry-After).
	Token(ctx context.Context, caller ipc.Caller, req TokenRequest) (*ipc.TokenResponse, error)
	// ProfileInfos lists what the caller may see.
	ProfileInfos(caller ipc.Caller) []ipc.ProfileInfo
	// MayUseAny reports whether the caller may use any profile; the
	// connections of those who may not are closed after each answer.
	MayUseAny(caller ipc.Caller) bool
	// StoreHealth is the token store's state, for /v1/health.
	StoreHealth() ipc.StoreHealth
	// Info says which agent this is, for /v1/health.
	Info() ipc.AgentInfo
}

// Config tunes the server; zero values are defaults.
type Config struct {
	Backend Backend
	// Metrics is the engine's side of /metrics; nil writes the requests
	// and runtime series alone.
	Metrics metrics.Collector
	// Observe, if set, is called once per answered request (denials
	// included), after the answer is written.
	Observe func(door.RequestEvent)
	// AgentUID may read /metrics (root always may).
	AgentUID uint32
	// RequestTimeout bounds one request's wait for a token; default 30s.
	RequestTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers; default 5s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long; default 2m.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps request headers; larger gets 431. Default 16 KiB.
	MaxHeaderBytes int
	// TokenEndpoint is the loopback token endpoint's URL, told in
	// /v1/health so that `tokenagent env` can point clients at it.
	TokenEndpoint string
	// TokenEndpointHTTPS and LocalCA are the HTTPS endpoint's URL and
	// what makes a caller trust it, told in /v1/health.
	TokenEndpointHTTPS string
	LocalCA            *ipc.LocalCA
	// AzureIdentity is the Azure managed-identity endpoint, told in
	// /v1/health; its Header secret only to root, the agent's user and
	// callers who may use some profile.
	AzureIdentity *ipc.AzureIdentity
	// Requests counts answered requests for /metrics; nil means a counter
	// of this server's own (share one to count every door).
	Requests *metrics.Requests
	// Doors, if set, tells /v1/health the TCP doors' state.
	Doors func() []ipc.DoorHealth
}

// Server serves the protocol on a listener from door.Listen.
type Server struct {
	*door.Server
	cfg      Config
	timeout  time.Duration
	rec      door.Recorder
	metrics  *metrics.Writer
	inFlight atomic.Int64
}

// New returns a server; call Serve with a listener from door.Listen.
func New(cfg Config) *Server {
	if cfg.Requests == nil {
		cfg.Requests = &metrics.Requests{}
	}
	t := door.Timeouts{ReadHeader: cfg.ReadHeaderTimeout, Request: cfg.RequestTimeout, Idle: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes}.WithDefaults()
	s := &Server{cfg: cfg, timeout: t.Request, rec: door.Recorder{Door: "socket", Requests: cfg.Requests, Observe: cfg.Observe}}
	s.metrics = &metrics.Writer{Requests: cfg.Requests, InFlight: s.inFlight.Load, Collector: cfg.Metrics}
	s.Server = door.NewServer(s, t)
	return s
}

// Metrics is the server's /metrics writer, which also serves
// metrics_listen (Handler).
func (s *Server) Metrics() *metrics.Writer { return s.metrics }

// asWireError turns any error into an *ipc.Error: those the backend made
// pass through; a deadline becomes ErrTimeout; anything else is internal,
// and its text is not sent (it may say more than a caller should know).
func asWireError(err error, timeout time.Duration) *ipc.Error {
	var e *ipc.Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return ipc.Errorf(ipc.ErrTimeout, fmt.Sprintf("no token within %v", timeout))
	}
	return &ipc.Error{Description: "internal error"}
}

// ServeHTTP is the protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	ev := s.rec.Event(r)
	defer func() { s.rec.Done(&ev, ev.Code != "" || ev.Profile != "") }()
	door.NoStore(w, false)
	if _, err := door.CallerFrom(r.Context()); err != nil {
		s.fail(w, &ev, forbidden("the agent could not read this connection's peer credentials"))
		return
	}
	if why := door.SocketGuard(r); why != "" {
		s.fail(w, &ev, forbidden(why))
		return
	}
	if ev.Caller.UID != 0 && ev.Caller.UID != s.cfg.AgentUID && !s.cfg.Backend.MayUseAny(ev.Caller) {
		// Nothing here is theirs: they get their answer, not a connection
		// to hold on to.
		w.Header().Set("Connection", "close")
	}
	route, err := ParseRoute(r.Method, r.URL.Path, r.URL.RawQuery)
	if err != nil {
		s.fail(w, &ev, asWireError(err, 0))
		return
	}
	ev.Profile = route.Profile
	if h := handlers[route.Endpoint]; h != nil {
		h(s, w, r, &ev, route)
	}
}

// handlers are the endpoints, one line each.
var handlers = map[string]func(*Server, http.ResponseWriter, *http.Request, *door.RequestEvent, Route){
	EndpointHealth:   (*Server).serveHealth,
	EndpointProfiles: (*Server).serveProfiles,
	EndpointMetrics:  (*Server).serveMetrics,
	EndpointDebug:    (*Server).serveDebug,
	EndpointToken:    (*Server).serveToken,
	EndpointRefresh:  (*Server).serveToken,
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request, ev *door.RequestEvent, _ Route) {
	h := ipc.HealthResponse{Status: "ok", TokenEndpoint: s.cfg.TokenEndpoint, TokenEndpointHTTPS: s.cfg.TokenEndpointHTTPS, LocalCA: s.cfg.LocalCA}
	if az := s.cfg.AzureIdentity; az != nil {
		told := *az
		if ev.Caller.UID != 0 && ev.Caller.UID != s.cfg.AgentUID && (s.cfg.Backend == nil || !s.cfg.Backend.MayUseAny(ev.Caller)) {
			told.Header = ""
		}
		h.AzureIdentity = &told
	}
	if s.cfg.Backend != nil {
		st, info := s.cfg.Backend.StoreHealth(), s.cfg.Backend.Info()
		h.Store, h.Agent = &st, &info
		if s.cfg.Doors != nil {
			h.Doors = s.cfg.Doors()
		}
		now := time.Now()
		for _, p := range s.cfg.Backend.ProfileInfos(ev.Caller) { // only the caller's: names stay private
			if p.LastError != "" && !p.ExpiresAt.After(now) || p.SinkStale {
				h.Degraded = append(h.Degraded, p.Name)
			}
		}
	}
	s.ok(w, ev, h)
}

func (s *Server) serveProfiles(w http.ResponseWriter, _ *http.Request, ev *door.RequestEvent, _ Route) {
	profiles := s.cfg.Backend.ProfileInfos(ev.Caller)
	if profiles == nil {
		profiles = []ipc.ProfileInfo{}
	}
	s.ok(w, ev, ipc.ProfilesResponse{Profiles: profiles})
}

func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request, ev *door.RequestEvent, _ Route) {
	if ev.Caller.UID != 0 && ev.Caller.UID != s.cfg.AgentUID {
		s.fail(w, ev, forbidden("/metrics is for root and the agent's user"))
		return
	}
	ev.Status = http.StatusOK
	s.metrics.Serve(w)
}

// serveDebug serves the Go runtime's profiles (net/http/pprof) to root
// and the agent's user: what holds the memory under a storm, where the
// goroutines wait. A profile names code and sizes, never a value.
func (s *Server) serveDebug(w http.ResponseWriter, r *http.Request, ev *door.RequestEvent, _ Route) {
	if ev.Caller.UID != 0 && ev.Caller.UID != s.cfg.AgentUID {
		s.fail(w, ev, forbidden(ipc.PathDebug+" is for root and the agent's user"))
		return
	}
	ev.Status = http.StatusOK
	switch name := strings.TrimPrefix(r.URL.Path, ipc.PathDebug); name {
	case "":
		pprof.Index(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}

func forbidden(why string) *ipc.Error { return ipc.Errorf(ipc.ErrForbidden, why) }

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, ev *door.RequestEvent, route Route) {
	req := TokenRequest{Profile: route.Profile, MinValid: route.MinValid, Refresh: route.Endpoint == EndpointRefresh}
	if req.Refresh {
		var body ipc.RefreshRequest
		data, err := io.ReadAll(io.LimitReader(r.Body, 4<<10+1))
		if err != nil || len(data) > 4<<10 {
			s.fail(w, ev, badRequest(ipc.CodeInvalidRequest, "refresh body unreadable or over 4 KiB"))
			return
		}
		if len(bytes.TrimSpace(data)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				s.fail(w, ev, badRequest(ipc.CodeInvalidRequest, `refresh body must be {"rejected_sha256":"<hex>"} or empty`))
				return
			}
		}
		req.RejectedSHA256 = body.RejectedSHA256
	}
	ctx, cancel := door.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	tok, err := s.cfg.Backend.Token(ctx, ev.Caller, req)
	if err != nil {
		e := asWireError(err, s.timeout)
		ev.Deny(e)
		if e.Kind == ipc.ErrUnknownProfile && !ev.Denied {
			ev.Profile = "" // callers choose these names: no metric label per guess
		}
		s.fail(w, ev, e)
		return
	}
	ev.TokenSHA256 = door.TokenFingerprint(tok.AccessToken)
	if acceptsPlain(r.Header.Get("Accept")) {
		ev.Status = http.StatusOK
		door.Write(w, http.StatusOK, "text/plain; charset=utf-8", []byte(tok.AccessToken+"\n"))
		return
	}
	ev.Status = http.StatusOK
	door.WriteAppended(w, http.StatusOK, func(b []byte) []byte { return appendToken(b, tok) })
}

// acceptsPlain reports whether the caller prefers text/plain over JSON.
func acceptsPlain(accept string) bool {
	for accept != "" {
		var part string
		part, accept, _ = strings.Cut(accept, ",")
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.TrimSpace(mt) {
		case "text/plain":
			return true
		case "application/json":
			return false
		}
	}
	return false
}

func (s *Server) ok(w http.ResponseWriter, ev *door.RequestEvent, v any) {
	ev.Status = http.StatusOK
	door.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) fail(w http.ResponseWriter, ev *door.RequestEvent, e *ipc.Error) {
	ev.Status, ev.Code, ev.Reason = ipc.StatusOf(e), e.WireCode(), e.Description
	door.WriteError(w, ev.Status, ev.Code, e.Description, e.RetryAfter)
}
