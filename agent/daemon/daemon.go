// Package daemon is the agent's wiring: configuration → store → engine →
// socket server → metrics listener → signals → shutdown, in one type that
// tokenagentd, the test harness (agent/agenttest) and the bench tool all
// run. Run is the only way in and cancelling its context the only way
// out; every server it starts is stopped before it returns, whichever
// step failed.
package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/internal/version"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
	"github.com/tokenagent/tokenagent/ipc/localapi"
	"github.com/tokenagent/tokenagent/ipc/metrics"
	"github.com/tokenagent/tokenagent/ipc/tokenendpoint"
)

// Options say what to run. Config and Socket are required; the zero value
// of every other field is the production default.
type Options struct {
	// Config is the configuration to start with.
	Config *config.Config
	// ConfigPath is the absolute path SIGHUP reloads; "" when the
	// configuration came from elsewhere (--dev, environment variables).
	ConfigPath string
	// Socket is the socket path, already resolved (ipc.SocketPath).
	Socket string
	// Logger receives the daemon's and the engine's events; nil means
	// NewLogger(Config, os.Stderr).
	Logger *zerolog.Logger
	// Version goes into the start-up event.
	Version string
	// ShutdownGrace bounds the wait for requests in flight when ctx ends;
	// default 30s.
	ShutdownGrace time.Duration
	// NoSignals leaves SIGHUP alone (tests that run several daemons in one
	// process); Reload still works.
	NoSignals bool
	// Observe, if set, sees every answered socket request after it is
	// logged (audits, tests).
	Observe func(door.RequestEvent)
	// ReadHeaderTimeout bounds reading a request's headers; default 5s.
	ReadHeaderTimeout time.Duration
	// HideEnvSecrets moves env: secrets out of the process environment
	// once they are read (tokenagentd sets it; tests that share their
	// environment do not).
	HideEnvSecrets bool
}

// Daemon is one running agent. Create it with New, run it with Run.
type Daemon struct {
	opts Options
	log  zerolog.Logger

	ready      chan struct{} // closed once serving (or once Run has failed)
	hup        chan struct{} // Reload requests
	mu         sync.Mutex
	cfg        *config.Config
	agent      *agent.Agent
	metricsLn  net.Addr
	endpointLn net.Addr
	started    time.Time // when Run began serving
	reloaded   time.Time // the last applied reload
}

// maxSocketPath is the longest path a Unix socket may have: sun_path
// holds 108 bytes on Linux, 104 on the BSDs and macOS, with the final NUL.
func maxSocketPath() int {
	if runtime.GOOS == "linux" {
		return 107
	}
	return 103
}

// New checks opts and returns a daemon ready to Run. It starts nothing.
func New(opts Options) (*Daemon, error) {
	if opts.Config == nil {
		return nil, errors.New("daemon: no configuration")
	}
	if opts.Socket == "" {
		return nil, errors.New("no socket path: XDG_RUNTIME_DIR is not set (as under cron, sudo -u or a service with User=), " +
			"and a user agent does not fall back to a directory in /tmp, where another user could have made it first. " +
			"Pass --socket PATH in a directory only you can write, set TOKENAGENT_SOCKET or the config's socket, or use the system agent")
	}
	if err := opts.Config.CheckServes(); err != nil {
		return nil, err
	}
	if max := maxSocketPath(); len(opts.Socket) > max {
		return nil, fmt.Errorf("socket path %s is %d bytes; a Unix socket's path may have at most %d here: choose a shorter --socket or socket", opts.Socket, len(opts.Socket), max)
	}
	if opts.ConfigPath != "" && !filepath.IsAbs(opts.ConfigPath) {
		return nil, fmt.Errorf("daemon: configuration path %q is not absolute; resolve it once, at start", opts.ConfigPath)
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 30 * time.Second
	}
	d := &Daemon{opts: opts, cfg: opts.Config, ready: make(chan struct{}), hup: make(chan struct{}, 1)}
	if opts.Logger != nil {
		d.log = *opts.Logger
	} else {
		d.log = NewLogger(opts.Config, os.Stderr)
	}
	return d, nil
}

// Ready is closed once the daemon serves on its socket, or once Run has
// returned without getting there.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Agent is the running engine; nil before Ready.
func (d *Daemon) Agent() *agent.Agent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.agent
}

// MetricsAddr is the address metrics_listen is bound to; nil when off or
// before Ready.
func (d *Daemon) MetricsAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.metricsLn
}

// TokenEndpointAddr is the address the loopback token endpoint is bound
// to; nil when off or before Ready.
func (d *Daemon) TokenEndpointAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.endpointLn
}

// Socket is the socket path the daemon serves on.
func (d *Daemon) Socket() string { return d.opts.Socket }

// Reload asks the running daemon to re-read its configuration file, as
// SIGHUP does.
func (d *Daemon) Reload() {
	select {
	case d.hup <- struct{}{}:
	default: // one is pending already
	}
}

// Run serves until ctx ends, then drains requests in flight (up to
// ShutdownGrace) and stops everything it started. It returns nil after a
// clean shutdown, or the error that stopped it.
func (d *Daemon) Run(ctx context.Context) (err error) {
	readyOnce := sync.OnceFunc(func() { close(d.ready) })
	defer readyOnce()
	cfg := d.opts.Config
	// SIGHUP is caught from the start: one sent as soon as the socket
	// answers (or "agent started" is logged) must reload, not kill.
	var hup chan os.Signal
	if !d.opts.NoSignals {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	if err := d.checkDirs(); err != nil {
		return err
	}

	fl, flClient, err := agent.OpenFleet(cfg)
	if err != nil {
		return err
	}
	if flClient != nil {
		defer flClient.Close() // after the engine's Close
	}
	a, err := agent.Open(cfg, agent.Options{Logger: &d.log, Fleet: fl})
	if err != nil {
		return err
	}
	defer a.Close() // closes the store too, after the last write
	if d.opts.HideEnvSecrets {
		if moved := secretref.HideEnvSecrets(cfg); len(moved) > 0 {
			d.log.Info().Strs("variables", moved).Msg("env: secrets moved out of the process environment")
		}
	}

	// The token endpoint's listener is opened first, so that the socket
	// can tell its URL (/v1/health, for tokenagent env).
	var eln net.Listener
	endpointURL := ""
	if cfg.TokenEndpoint != "" {
		if eln, err = tokenendpoint.Listen(cfg.TokenEndpoint, connectionLimits(cfg)); err != nil {
			return fmt.Errorf("config %s: %w", cfg.Path(), err)
		}
		defer eln.Close() // if serving never starts; harmless after
		endpointURL = "http://" + eln.Addr().String() + tokenendpoint.PathToken
	}

	ln, err := listen(cfg, d.opts.Socket)
	if err != nil {
		return err
	}
	observe := logRequests(d.log)
	if extra := d.opts.Observe; extra != nil {
		logged := observe
		observe = func(ev door.RequestEvent) { logged(ev); extra(ev) }
	}
	requests := &metrics.Requests{} // every door's, on the socket's /metrics
	srv := localapi.New(localapi.Config{Backend: backend{a, d}, Metrics: a, Observe: observe, AgentUID: uint32(os.Geteuid()), Requests: requests,
		ReadHeaderTimeout: d.opts.ReadHeaderTimeout, TokenEndpoint: endpointURL})
	served := make(chan error, 3) // one answer from each server; never blocks
	serveDone := make(chan struct{})
	go func() { defer close(serveDone); served <- srv.Serve(ln) }()
	// Serve closes the listener (removing the socket) when it returns, even
	// when Shutdown came first: wait for that, so that Run never returns
	// with the socket still there.
	defer func() { d.shutdown(srv, a); <-serveDone }()

	var endpointAddr net.Addr
	if eln != nil {
		esrv := tokenendpoint.New(tokenendpoint.Config{Backend: endpointBackend{backend{a, d}}, Observe: observe, AgentUID: uint32(os.Geteuid()), Requests: requests})
		endpointDone := make(chan struct{})
		go func() { defer close(endpointDone); served <- esrv.Serve(eln) }()
		defer func() { d.drain(esrv, "token endpoint", a); <-endpointDone }()
		endpointAddr = eln.Addr()
		d.log.Info().Str("token_endpoint", endpointURL).Msg("serving the loopback OAuth 2.0 token endpoint")
	}

	var metricsAddr net.Addr
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("config %s: metrics_listen %s: %w", cfg.Path(), cfg.MetricsListen, err)
		}
		msrv := &http.Server{Handler: srv.Metrics().Handler(), ReadHeaderTimeout: 5 * time.Second}
		metricsDone := make(chan struct{})
		go func() { defer close(metricsDone); served <- msrv.Serve(mln) }()
		defer func() { msrv.Close(); <-metricsDone }()
		metricsAddr = mln.Addr()
		d.log.Info().Str("metrics_listen", metricsAddr.String()).Msg("serving /metrics over TCP")
	}

	d.mu.Lock()
	d.agent, d.metricsLn, d.endpointLn, d.started = a, metricsAddr, endpointAddr, time.Now()
	d.mu.Unlock()
	storeDesc := "memory"
	if h := a.StoreHealth(); h.State != "memory" {
		storeDesc = h.Path + " (" + h.State + ")"
	}
	started := d.log.Info().Str("config", cfg.Path()).Str("socket", d.opts.Socket).Str("store", storeDesc).
		Strs("profiles", cfg.ProfileNames()).Str("version", d.opts.Version)
	if hint := ipc.SocketHint(d.opts.Socket); hint != "" {
		// Clients do not read this configuration: they need to be told.
		started = started.Str("clients_need", hint)
	}
	started.Msg("agent started")
	if err := sdNotify("READY=1"); err != nil {
		d.log.Warn().Err(err).Msg("cannot notify systemd of readiness")
	}
	readyOnce()

	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			return fmt.Errorf("serving: %w", err)
		case <-hup:
			d.reload(a)
		case <-d.hup:
			d.reload(a)
		}
	}
}

// checkDirs applies the trust rule to every directory the agent will
// keep something in or read a key from: the socket's, the store's, the
// configuration's (where the default store key is created) and those of
// store_key files.
func (d *Daemon) checkDirs() error {
	uid := os.Geteuid()
	dirs := [][2]string{{"socket directory", filepath.Dir(d.opts.Socket)}}
	if p := d.opts.Config.StorePath(); p != "" {
		dirs = append(dirs, [2]string{"store directory", filepath.Dir(p)})
	}
	if d.opts.ConfigPath != "" {
		dirs = append(dirs, [2]string{"configuration directory", filepath.Dir(d.opts.ConfigPath)})
	}
	for _, key := range d.opts.Config.KeyFiles() {
		dirs = append(dirs, [2]string{"store key directory", filepath.Dir(key)})
	}
	for _, dir := range d.opts.Config.SinkDirs() {
		dirs = append(dirs, [2]string{"file sink directory", dir})
	}
	for _, dir := range dirs {
		if err := checkTrustedDir(dir[0], dir[1], uid); err != nil {
			return err
		}
	}
	return nil
}

// shutdown lets requests in flight finish, then closes the socket.
func (d *Daemon) shutdown(srv *localapi.Server, a *agent.Agent) {
	sdNotify("STOPPING=1")
	d.log.Info().Msg("shutting down: finishing requests in flight")
	d.drain(srv, "socket", a)
}

// answerGrace is how long requests that were waiting for a fetch get to
// write their "shutting down" answer once the engine stopped fetching.
const answerGrace = time.Second

// drain lets a door's requests in flight finish, up to ShutdownGrace.
// Those still waiting for the IdP are then answered ErrShuttingDown (the
// engine stops fetching), and only what is left after that is cut off.
func (d *Daemon) drain(srv interface {
	Shutdown(context.Context) error
	Close() error
}, door string, a *agent.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err == nil {
		return
	}
	a.StopFetching()
	ctx, cancel = context.WithTimeout(context.Background(), answerGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		d.log.Warn().Err(err).Str("door", door).Msg("requests still in flight at shutdown were cut off")
		srv.Close()
	}
}

// reload re-reads the configuration file. A file that does not load, or a
// profile that cannot be built, leaves the running configuration in place;
// the log says why.
func (d *Daemon) reload(a *agent.Agent) {
	path := d.opts.ConfigPath
	if path == "" {
		d.log.Info().Msg("SIGHUP: no configuration file to reload (--dev or environment variables)")
		return
	}
	sdNotify("RELOADING=1")
	defer sdNotify("READY=1")
	d.log.Info().Str("config", path).Msg("SIGHUP: reloading configuration")
	next, err := secretref.LoadConfig(path)
	if err == nil {
		err = next.CheckServes()
	}
	if err == nil {
		for _, dir := range next.SinkDirs() { // a new file sink must live somewhere safe too
			if err = checkTrustedDir("file sink directory", dir, os.Geteuid()); err != nil {
				break
			}
		}
	}
	if err == nil {
		_, err = a.Reload(next)
	}
	if err != nil {
		d.log.Error().Err(err).Str("config", path).Msg("reload rejected; still running the previous configuration")
		return
	}
	d.mu.Lock()
	prev := d.cfg
	d.cfg, d.reloaded = next, time.Now()
	d.mu.Unlock()
	setLogLevel(next)
	warnRestartOnly(prev, next, d.log)
}

// warnRestartOnly says which changed settings a reload cannot apply.
func warnRestartOnly(old, next *config.Config, log zerolog.Logger) {
	for _, s := range []struct {
		key       string
		was, then string
	}{
		{"socket", old.Socket, next.Socket},
		{"socket_mode", old.SocketMode, next.SocketMode},
		{"socket_group", old.SocketGroup, next.SocketGroup},
		{"max_connections", fmt.Sprint(old.MaxConnections), fmt.Sprint(next.MaxConnections)},
		{"max_connections_per_uid", fmt.Sprint(old.MaxConnectionsPerUID), fmt.Sprint(next.MaxConnectionsPerUID)},
		{"metrics_listen", old.MetricsListen, next.MetricsListen},
		{"token_endpoint", old.TokenEndpoint, next.TokenEndpoint},
		{"store", old.Store, next.Store},
		{"store_key", old.StoreKey, next.StoreKey},
		{"store_key_previous", fmt.Sprint(old.StoreKeyPrevious), fmt.Sprint(next.StoreKeyPrevious)},
		{"log_level", old.LogLevel, next.LogLevel},
		{"log_format", old.LogFormat, next.LogFormat},
		{"[fleet]", fleetText(old), fleetText(next)},
	} {
		if s.was != s.then {
			log.Warn().Str("setting", s.key).Msg("changed in the file, but applies only at start: restart the agent to use it")
		}
	}
}

// fleetText is [fleet] as text, to see whether a reload changed it.
func fleetText(c *config.Config) string {
	b, _ := json.Marshal(c.Fleet)
	return string(b)
}

// NewLogger logs to w: console format on a terminal, JSON otherwise,
// unless the configuration says which.
func NewLogger(cfg *config.Config, w io.Writer) zerolog.Logger {
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	// Durations in seconds: "ttl":120 reads better at 3 a.m. than 120000.
	zerolog.DurationFieldUnit = time.Second
	zerolog.DurationFieldInteger = false
	setLogLevel(cfg)
	return zerolog.New(levelWriter{w}).With().Timestamp().Logger()
}

// logLevel is the least level that loggers made by NewLogger write; a
// reload changes it (log_level applies without a restart).
var logLevel atomic.Int32

func setLogLevel(cfg *config.Config) {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || cfg.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	logLevel.Store(int32(level))
}

// levelWriter drops events below logLevel.
type levelWriter struct{ w io.Writer }

func (l levelWriter) Write(p []byte) (int, error) { return l.w.Write(p) }

func (l levelWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	if int32(level) < logLevel.Load() {
		return len(p), nil
	}
	return l.w.Write(p)
}

// backend serves the engine to the socket (localapi.Backend) and to
// /metrics (metrics.Collector): the engine answers both itself, apart
// from who the agent is and the wire form of a token.
type backend struct {
	*agent.Agent
	d *Daemon
}

func (b backend) Info() ipc.AgentInfo {
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	return ipc.AgentInfo{Version: cmp.Or(b.d.opts.Version, "tokenagentd "+version.String()), Config: b.d.cfg.Path(),
		StartedAt: b.d.started.UTC(), ReloadedAt: b.d.reloaded.UTC()}
}

func (b backend) Token(ctx context.Context, caller ipc.Caller, req localapi.TokenRequest) (*ipc.TokenResponse, error) {
	var tok *agent.Token
	var err error
	// A refresh without a report is answered like a token request: only a
	// report of the current token makes the agent fetch a new one.
	if req.Refresh && req.RejectedSHA256 != "" {
		tok, err = b.Agent.ReportRejected(ctx, caller, req.Profile, req.RejectedSHA256, req.MinValid)
	} else {
		tok, err = b.Agent.Token(ctx, caller, req.Profile, req.MinValid)
	}
	if err != nil {
		return nil, err
	}
	return &ipc.TokenResponse{
		AccessToken: tok.AccessToken,
		TokenType:   tok.TokenType,
		ExpiresAt:   tok.ExpiresAt.UTC(),
		ExpiresIn:   int64(time.Until(tok.ExpiresAt) / time.Second),
		Scope:       tok.Scope,
	}, nil
}

// endpointBackend serves the engine to the loopback token endpoint: the
// engine's Match, and a token as the socket serves it.
type endpointBackend struct{ backend }

func (e endpointBackend) Token(ctx context.Context, caller ipc.Caller, profile string) (*ipc.TokenResponse, error) {
	return e.backend.Token(ctx, caller, localapi.TokenRequest{Profile: profile})
}
