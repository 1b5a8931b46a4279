package door

import (
	"cmp"
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"time"
)

// Timeouts bound a door's connections; zero values are the defaults.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers; default 5s. The
	// whole request must be read within 5s more.
	ReadHeader time.Duration
	// Request bounds one request's wait for a token; default 30s. Answers
	// must be written within 5s more.
	Request time.Duration
	// Idle closes keep-alive connections idle this long; default 2m.
	Idle time.Duration
	// MaxHeaderBytes caps request headers; larger gets 431. Default 16 KiB.
	MaxHeaderBytes int
}

// WithDefaults fills in the zero values.
func (t Timeouts) WithDefaults() Timeouts {
	t.ReadHeader = cmp.Or(t.ReadHeader, 5*time.Second)
	t.Request = cmp.Or(t.Request, 30*time.Second)
	t.Idle = cmp.Or(t.Idle, 2*time.Minute)
	t.MaxHeaderBytes = cmp.Or(t.MaxHeaderBytes, 16<<10)
	return t
}

// Server serves one door's handler on listeners from Listen or Limit.
// Shutdown (or Close) is the only way to stop it.
type Server struct {
	http *http.Server
}

// NewServer returns a server for h with the timeouts t; every request's
// context carries its connection's caller (CallerFrom).
func NewServer(h http.Handler, t Timeouts) *Server {
	t = t.WithDefaults()
	return &Server{http: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.ReadHeader + 5*time.Second,
		WriteTimeout:      t.Request + 5*time.Second,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    t.MaxHeaderBytes,
		ConnContext:       ConnContext,
	}}
}

// SetErrorLog sends what net/http itself reports (accept errors, TLS
// handshake errors) to l instead of the process's stderr. Call it before
// Serve.
func (s *Server) SetErrorLog(l *log.Logger) { s.http.ErrorLog = l }

// Serve answers requests on l until Shutdown or Close; it returns nil
// then.
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, lets requests in flight finish (until ctx
// ends) and closes the listener, which removes a socket file.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.http.Close() }
