package ipc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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

// Backend is what the server serves; package agent satisfies it. Access
// control is the backend's: it knows which caller may use which profile.
type Backend interface {
	// Token returns a token for the caller, or an *Error.
	Token(ctx context.Context, caller Caller, req TokenRequest) (*TokenResponse, error)
	// Profiles lists what the caller may see.
	Profiles(caller Caller) []ProfileInfo
}

// MetricsWriter is implemented by backends that add their own series to
// /metrics (Prometheus text format).
type MetricsWriter interface {
	WriteMetrics(w io.Writer)
}

// Error is a failed request: an HTTP status and the wire error.
type Error struct {
	Status      int
	Code        string
	Description string
	// RetryAfter, when set, is sent as Retry-After (503, 429).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Description) }

// RequestEvent describes one answered request, for logs and audits. It
// never holds a token: TokenSHA256 is a short fingerprint.
type RequestEvent struct {
	Caller   Caller
	Method   string
	Path     string
	Profile  string
	Status   int
	Code     string // the error code; "" on success
	Reason   string // the error description; "" on success
	Duration time.Duration
	// TokenSHA256 is the first 12 hex digits of the served token's SHA-256.
	TokenSHA256 string
}

// ServerConfig tunes the server; zero values are defaults.
type ServerConfig struct {
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
}

// Server serves the protocol on a listener from Listen.
type Server struct {
	cfg  ServerConfig
	http *http.Server

	inFlight atomic.Int64
	mu       sync.Mutex
	requests map[[2]string]uint64 // {profile, outcome} → count
}

// NewServer returns a server; call Serve with a listener from Listen.
func NewServer(cfg ServerConfig) *Server {
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = 5 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	s := &Server{cfg: cfg, requests: map[[2]string]uint64{}}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadHeaderTimeout + 5*time.Second,
		WriteTimeout:      cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ci := &callerInfo{err: ErrNoCredentials}
			if pc, ok := c.(*peerConn); ok {
				ci = &callerInfo{caller: pc.caller, err: pc.credErr}
			}
			return context.WithValue(ctx, callerKey{}, ci)
		},
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

// ServeHTTP is the protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	ev := RequestEvent{Method: r.Method, Path: r.URL.Path}
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
	if err != nil {
		s.fail(w, &ev, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Description: "the agent could not read this connection's peer credentials"})
		return
	}
	// A browser page can be tricked into talking to a local socket through
	// a proxy; browsers always send Origin or Referer, curl and Go do not.
	host := r.Host
	if h, _, hasPort := strings.Cut(host, ":"); hasPort {
		host = h
	}
	if host != Host {
		s.fail(w, &ev, forbidden(fmt.Sprintf("Host must be %q", Host)))
		return
	}
	if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
		s.fail(w, &ev, forbidden("requests with Origin or Referer are refused"))
		return
	}
	route, err := ParseRoute(r.Method, r.URL.Path, r.URL.RawQuery)
	if err != nil {
		var re *routeError
		errors.As(err, &re)
		s.fail(w, &ev, &Error{Status: re.status, Code: re.code, Description: re.msg})
		return
	}
	ev.Profile = route.Profile
	switch route.Endpoint {
	case EndpointHealth:
		s.ok(w, &ev, HealthResponse{Status: "ok"})
	case EndpointProfiles:
		profiles := s.cfg.Backend.Profiles(caller)
		if profiles == nil {
			profiles = []ProfileInfo{}
		}
		s.ok(w, &ev, ProfilesResponse{Profiles: profiles})
	case EndpointMetrics:
		if caller.UID != 0 && caller.UID != s.cfg.AgentUID {
			s.fail(w, &ev, forbidden("/metrics is for root and the agent's user"))
			return
		}
		ev.Status = http.StatusOK
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.writeMetrics(w)
	case EndpointToken, EndpointRefresh:
		s.serveToken(w, r, &ev, route)
	}
}

func forbidden(why string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Description: why}
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, ev *RequestEvent, route Route) {
	req := TokenRequest{Profile: route.Profile, MinValid: route.MinValid, Refresh: route.Endpoint == EndpointRefresh}
	if req.Refresh {
		var body RefreshRequest
		data, err := io.ReadAll(io.LimitReader(r.Body, 4<<10+1))
		if err != nil || len(data) > 4<<10 {
			s.fail(w, ev, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "refresh body unreadable or over 4 KiB"})
			return
		}
		if len(bytes.TrimSpace(data)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				s.fail(w, ev, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: `refresh body must be {"rejected_sha256":"<hex>"} or empty`})
				return
			}
		}
		req.RejectedSHA256 = body.RejectedSHA256
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	tok, err := s.cfg.Backend.Token(ctx, ev.Caller, req)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Description: "internal error"}
			if errors.Is(err, context.DeadlineExceeded) {
				e = &Error{Status: http.StatusGatewayTimeout, Code: CodeTimeout, Description: fmt.Sprintf("no token within %v", s.cfg.RequestTimeout)}
			}
		}
		if e.Code == CodeUnknownProfile {
			ev.Profile = "" // callers choose these names: no metric label per guess
		}
		s.fail(w, ev, e)
		return
	}
	sum := sha256.Sum256([]byte(tok.AccessToken))
	ev.TokenSHA256 = hex.EncodeToString(sum[:6])
	if acceptsPlain(r.Header.Get("Accept")) {
		ev.Status = http.StatusOK
		s.count(ev.Profile, "ok")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, tok.AccessToken+"\n")
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

func (s *Server) fail(w http.ResponseWriter, ev *RequestEvent, e *Error) {
	ev.Status, ev.Code, ev.Reason = e.Status, e.Code, e.Description
	s.count(ev.Profile, e.Code)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, e.Status, ErrorResponse{Error: e.Code, ErrorDescription: e.Description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// count tallies a request. Outcomes include IdP error codes, so they are
// reduced to [A-Za-z0-9_] before becoming label values.
func (s *Server) count(profile, outcome string) {
	if profile == "" {
		profile = "-"
	}
	outcome = MetricLabel(outcome)
	s.mu.Lock()
	s.requests[[2]string{profile, outcome}]++
	s.mu.Unlock()
}

func (s *Server) writeMetrics(w io.Writer) {
	s.mu.Lock()
	keys := make([][2]string, 0, len(s.requests))
	for k := range s.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+"\x00"+keys[i][1] < keys[j][0]+"\x00"+keys[j][1] })
	fmt.Fprintln(w, "# HELP tokenagent_requests_total Socket requests by profile and outcome.")
	fmt.Fprintln(w, "# TYPE tokenagent_requests_total counter")
	for _, k := range keys {
		fmt.Fprintf(w, "tokenagent_requests_total{profile=%q,outcome=%q} %d\n", k[0], k[1], s.requests[k])
	}
	s.mu.Unlock()
	fmt.Fprintln(w, "# HELP tokenagent_requests_in_flight Socket requests being answered now.")
	fmt.Fprintln(w, "# TYPE tokenagent_requests_in_flight gauge")
	fmt.Fprintf(w, "tokenagent_requests_in_flight %d\n", s.inFlight.Load())
	if mw, ok := s.cfg.Backend.(MetricsWriter); ok {
		mw.WriteMetrics(w)
	}
}

// MetricLabel reduces a string that came from outside (an IdP's error
// code) to [a-z0-9_], safe as a Prometheus label value.
func MetricLabel(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
}

// MetricsHandler serves /metrics alone, for a separate TCP listener
// (metrics_listen). It has no peer credentials to check: bind it to
// loopback or protect it otherwise.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathMetrics, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.writeMetrics(w)
	})
	return mux
}

// AgentUID is the uid of this process, for ServerConfig.AgentUID.
func AgentUID() uint32 { return uint32(os.Geteuid()) }
