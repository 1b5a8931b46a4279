// Package localapi serves tokenagent's socket protocol (package ipc) to
// local processes: a listener that sets the socket's mode and group
// explicitly and never unlinks a live socket, the peer credentials of
// every connection, and an HTTP/1.1 handler over the small Backend
// interface that the daemon wires to the engine. It is where the shared
// sentinel errors become HTTP statuses (ipc.StatusOf), and where /metrics is
// written in the Prometheus text format.
package localapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
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
	// Profiles lists what the caller may see.
	Profiles(caller ipc.Caller) []ipc.ProfileInfo
	// MayUseAny reports whether the caller may use any profile; the
	// connections of those who may not are closed after each answer.
	MayUseAny(caller ipc.Caller) bool
	// Stats are the engine's counters per profile, for /metrics.
	Stats() []ProfileStats
	// StoreHealth is the token store's state, for /v1/health and /metrics.
	StoreHealth() ipc.StoreHealth
	// Info says which agent this is, for /v1/health.
	Info() ipc.AgentInfo
}

// RequestEvent describes one answered request, for logs and audits. It
// never holds a token: TokenSHA256 is a short fingerprint.
type RequestEvent struct {
	// Door is how the request came: "socket", or "token_endpoint".
	Door string
	// Conn numbers the connection the request came on (1, 2, … per
	// listener): requests on one kept-alive connection share it.
	Conn     uint64
	Caller   ipc.Caller
	Method   string
	Path     string
	Profile  string
	Status   int
	Code     string // the error code; "" on success
	Reason   string // the error description; "" on success
	Duration time.Duration
	// TokenSHA256 is the served token's ipc.Fingerprint.
	TokenSHA256 string
	// Denied is set when the caller was refused a profile that exists
	// (the answer itself does not say so).
	Denied bool
}

// Config tunes the server; zero values are defaults.
type Config struct {
	Backend Backend
	// Observe, if set, is called once per answered request (denials
	// included), after the answer is written.
	Observe func(RequestEvent)
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
	// Requests counts answered requests for /metrics; nil means a counter
	// of this server's own (share one to count every door).
	Requests *Requests
}

// Server serves the protocol on a listener from Listen.
type Server struct {
	cfg  Config
	http *http.Server

	inFlight atomic.Int64
}

// New returns a server; call Serve with a listener from Listen.
func New(cfg Config) *Server {
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, 30*time.Second)
	cfg.ReadHeaderTimeout = cmp.Or(cfg.ReadHeaderTimeout, 5*time.Second)
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, 2*time.Minute)
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	if cfg.Requests == nil {
		cfg.Requests = &Requests{}
	}
	s := &Server{cfg: cfg}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadHeaderTimeout + 5*time.Second,
		WriteTimeout:      cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ConnContext:       ConnContext,
	}
	return s
}

// Serve answers requests on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets requests in flight finish (until ctx
// ends) and closes the listener, which removes the socket file.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.http.Close() }

// ConnContext attaches a connection's caller (from Listen or Limit) to
// the context of every request on it; use it as http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	ci := &callerInfo{err: ErrNoCredentials}
	if pc, ok := c.(*peerConn); ok {
		ci = &callerInfo{conn: pc.id, caller: pc.caller, err: pc.credErr}
	}
	return context.WithValue(ctx, callerKey{}, ci)
}

// ConnFrom is the number of the connection a request came on (see
// RequestEvent.Conn); 0 when unknown.
func ConnFrom(ctx context.Context) uint64 {
	if ci, ok := ctx.Value(callerKey{}).(*callerInfo); ok {
		return ci.conn
	}
	return 0
}

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
	ev := RequestEvent{Door: "socket", Method: r.Method, Path: r.URL.Path}
	start := time.Now()
	defer func() {
		if s.cfg.Observe != nil {
			ev.Duration = time.Since(start)
			s.cfg.Observe(ev)
		}
	}()
	w.Header().Set("Cache-Control", "no-store")
	caller, err := CallerFrom(r.Context())
	ev.Caller = caller
	ev.Conn = ConnFrom(r.Context())
	if err != nil {
		s.fail(w, &ev, forbidden("the agent could not read this connection's peer credentials"))
		return
	}
	// A browser page can be tricked into talking to a local socket through
	// a proxy; browsers always send Origin or Referer, curl and Go do not.
	host := r.Host
	if h, _, hasPort := strings.Cut(host, ":"); hasPort {
		host = h
	}
	if host != ipc.Host {
		s.fail(w, &ev, forbidden(fmt.Sprintf("Host must be %q", ipc.Host)))
		return
	}
	if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
		s.fail(w, &ev, forbidden("requests with Origin or Referer are refused"))
		return
	}
	if caller.UID != 0 && caller.UID != s.cfg.AgentUID && !s.cfg.Backend.MayUseAny(caller) {
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
var handlers = map[string]func(*Server, http.ResponseWriter, *http.Request, *RequestEvent, Route){
	EndpointHealth:   (*Server).serveHealth,
	EndpointProfiles: (*Server).serveProfiles,
	EndpointMetrics:  (*Server).serveMetrics,
	EndpointToken:    (*Server).serveToken,
	EndpointRefresh:  (*Server).serveToken,
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request, ev *RequestEvent, _ Route) {
	h := ipc.HealthResponse{Status: "ok", TokenEndpoint: s.cfg.TokenEndpoint}
	if s.cfg.Backend != nil {
		st, info := s.cfg.Backend.StoreHealth(), s.cfg.Backend.Info()
		h.Store, h.Agent = &st, &info
		now := time.Now()
		for _, p := range s.cfg.Backend.Profiles(ev.Caller) { // only the caller's: names stay private
			if p.LastError != "" && !p.ExpiresAt.After(now) {
				h.Degraded = append(h.Degraded, p.Name)
			}
		}
	}
	s.ok(w, ev, h)
}

func (s *Server) serveProfiles(w http.ResponseWriter, _ *http.Request, ev *RequestEvent, _ Route) {
	profiles := s.cfg.Backend.Profiles(ev.Caller)
	if profiles == nil {
		profiles = []ipc.ProfileInfo{}
	}
	s.ok(w, ev, ipc.ProfilesResponse{Profiles: profiles})
}

func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request, ev *RequestEvent, _ Route) {
	if ev.Caller.UID != 0 && ev.Caller.UID != s.cfg.AgentUID {
		s.fail(w, ev, forbidden("/metrics is for root and the agent's user"))
		return
	}
	ev.Status = http.StatusOK
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	s.writeMetrics(w)
}

func forbidden(why string) *ipc.Error { return ipc.Errorf(ipc.ErrForbidden, why) }

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, ev *RequestEvent, route Route) {
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
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	tok, err := s.cfg.Backend.Token(ctx, ev.Caller, req)
	if err != nil {
		e := asWireError(err, s.cfg.RequestTimeout)
		ev.Denied = e.Denied
		if e.Kind == ipc.ErrUnknownProfile && !ev.Denied {
			ev.Profile = "" // callers choose these names: no metric label per guess
		}
		s.fail(w, ev, e)
		return
	}
	ev.TokenSHA256 = ipc.Fingerprint(tok.AccessToken)
	if acceptsPlain(r.Header.Get("Accept")) {
		ev.Status = http.StatusOK
		s.count(ev.Profile, "ok")
		write(w, http.StatusOK, "text/plain; charset=utf-8", []byte(tok.AccessToken+"\n"))
		return
	}
	s.ok(w, ev, tok)
}

// acceptsPlain reports whether the caller prefers text/plain over JSON.
func acceptsPlain(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
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

func (s *Server) ok(w http.ResponseWriter, ev *RequestEvent, v any) {
	ev.Status = http.StatusOK
	if ev.Profile != "" {
		s.count(ev.Profile, "ok")
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) fail(w http.ResponseWriter, ev *RequestEvent, e *ipc.Error) {
	status, code := ipc.StatusOf(e), e.WireCode()
	ev.Status, ev.Code, ev.Reason = status, code, e.Description
	s.count(ev.Profile, code)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, status, ipc.ErrorResponse{Error: code, ErrorDescription: e.Description})
}

// writeJSON answers with v and an explicit Content-Length, so that a
// minimal client (the CLI's) never meets a chunked body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, _ := json.Marshal(v)
	write(w, status, "application/json", append(data, '\n'))
}

func write(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
