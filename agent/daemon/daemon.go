// Package daemon is the agent's wiring: trusted directories → engine (with
// its store and fleet) → doors (socket, token endpoint, metrics) → ready →
// signals and reloads → shutdown, as named steps of one type that
// tokenagentd, the test harness (agent/agenttest) and the bench tool all
// run. Run is the only way in and cancelling its context the only way
// out; every server it starts is stopped before it returns, whichever
// step failed.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	filesink "github.com/tokenagent/tokenagent/agent/sink"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
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
	// Clock is the engine's time source, which the doors' answers use
	// too (expires_in); nil means the system clock.
	Clock agent.Clock
	// BindRetry is how often a TCP door's address that could not be
	// bound (another process holds the port) is tried again; default 10s.
	BindRetry time.Duration
	// HideEnvSecrets moves env: secrets out of the process environment
	// once they are read (tokenagentd sets it; tests that share their
	// environment do not).
	HideEnvSecrets bool
	// ManageMemory applies memory_limit to the process (the runtime's
	// soft limit) and returns the memory a burst of connections left
	// behind to the system once it has passed (tokenagentd sets it; tests
	// that run several daemons in one process do not).
	ManageMemory bool
}

// Daemon is one running agent. Create it with New, run it with Run.
type Daemon struct {
	opts Options
	log  zerolog.Logger

	ready     chan struct{} // closed once serving (or once Run has failed)
	readyOnce func()        // closes ready
	clock     agent.Clock   // the engine's
	hup       chan struct{} // Reload requests
	// reloadDone is closed, and replaced, when a reload has been handled
	// to its end (applied or rejected): see Reloaded.
	reloadDone atomic.Pointer[chan struct{}]
	mu         sync.Mutex
	cfg        *config.Config
	agent      *agent.Agent
	metricsLn  net.Addr
	endpointLn net.Addr
	gcpAddrs   map[string]string // profile → its gcp_metadata address
	held       []heldDoor        // the TCP doors' listeners, for /v1/health
	started    time.Time         // when Run began serving
	reloaded   time.Time         // the last applied reload

	requests  *requestLog // the doors' request lines, bounded
	httpLimit *logLimit   // net/http's own error lines, bounded
	audit     *auditLog   // audit_log; nil when off
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
	d := &Daemon{opts: opts, cfg: opts.Config, ready: make(chan struct{}), hup: make(chan struct{}, 1), clock: opts.Clock}
	done := make(chan struct{})
	d.reloadDone.Store(&done)
	d.readyOnce = sync.OnceFunc(func() { close(d.ready) })
	if d.clock == nil {
		d.clock = agent.SystemClock{}
	}
	if opts.Logger != nil {
		d.log = *opts.Logger
	} else {
		d.log = NewLogger(opts.Config, os.Stderr)
	}
	d.requests = newRequestLog(d.log, d.clock.Now)
	d.httpLimit = newLogLimit("HTTP server errors", zerolog.WarnLevel, d.clock.Now)
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

// Reloaded is closed when the next reload (SIGHUP or Reload) has been
// handled to its end — every setting applied, or the file rejected.
// Take it before asking for the reload.
func (d *Daemon) Reloaded() <-chan struct{} { return *d.reloadDone.Load() }

// Run serves until ctx ends, then drains requests in flight (up to
// ShutdownGrace) and stops everything it started. It returns nil after a
// clean shutdown, or the error that stopped it. Each step is a method
// below, in this order.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.readyOnce()
	sig, stopSignals := d.catchSignals()
	defer stopSignals()
	if err := d.checkDirs(); err != nil {
		return err
	}
	defer d.manageMemory()()
	closeAudit, err := d.openAudit()
	if err != nil {
		return err
	}
	defer closeAudit()
	defer d.flushLogs(ctx)()
	a, closeEngine, err := d.openEngine()
	if err != nil {
		return err
	}
	defer closeEngine()
	ds, err := d.openDoors(a)
	if err != nil {
		return err
	}
	served := ds.serve()
	defer d.shutdown(ds, a)
	d.announce(a, ds)
	return d.reloadLoop(ctx, a, sig, served)
}

// manageMemory applies memory_limit and returns memory bursts leave
// behind (ManageMemory); the returned func stops it.
func (d *Daemon) manageMemory() func() {
	if !d.opts.ManageMemory {
		return func() {}
	}
	applyMemoryLimit(d.opts.Config, d.log)
	stop := make(chan struct{})
	go releaseMemory(stop)
	return func() { close(stop) }
}

// catchSignals catches SIGHUP from the start: one sent as soon as the
// socket answers (or "agent started" is logged) must reload, not kill.
// With NoSignals it returns a channel that never delivers.
func (d *Daemon) catchSignals() (<-chan os.Signal, func()) {
	if d.opts.NoSignals {
		return nil, func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// openEngine opens the fleet client, if [fleet] asks for one, and the
// engine with its store (agent.Open: the store's degrade-to-memory policy
// is the engine's); then it hides env: secrets if asked. The returned
// func closes the engine (and its store, after the last write), then the
// fleet client.
func (d *Daemon) openEngine() (*agent.Agent, func(), error) {
	cfg := d.opts.Config
	fl, flClient, err := agent.OpenFleet(cfg)
	if err != nil {
		return nil, nil, err
	}
	a, err := agent.Open(cfg, agent.Options{Logger: &d.log, Fleet: fl, Clock: d.clock})
	if err != nil {
		if flClient != nil {
			flClient.Close()
		}
		return nil, nil, err
	}
	if d.opts.HideEnvSecrets {
		if moved := secretref.HideEnvSecrets(cfg); len(moved) > 0 {
			d.log.Info().Strs("variables", moved).Msg("env: secrets moved out of the process environment")
		}
	}
	return a, func() {
		a.Close()
		if flClient != nil {
			flClient.Close()
		}
	}, nil
}

// openAudit opens audit_log, if set, in a directory it makes (0700) if
// need be; the returned func writes what is queued and closes it, after
// the doors have stopped.
func (d *Daemon) openAudit() (func(), error) {
	path := d.opts.Config.AuditLog
	if path == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit_log %s: %w", path, err)
	}
	a, err := openAudit(path, d.log)
	if err != nil {
		return nil, err
	}
	d.audit = a
	d.log.Info().Str("audit_log", path).Msg("auditing every token handed out")
	return a.Close, nil
}

// flushLogs writes, every logWindow until ctx ends, the count of request
// and HTTP server lines the last window suppressed; the returned func
// stops it and writes the counts of the window under way.
func (d *Daemon) flushLogs(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(logWindow)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				d.requests.flush(false)
				d.httpLimit.flush(d.log, false)
			}
		}
	}()
	return func() {
		cancel()
		<-done
		d.requests.flush(true) // the counts of the last, unfinished window
		d.httpLimit.flush(d.log, true)
	}
}

// announce publishes what runs (Agent, the doors' addresses), logs "agent
// started", tells systemd and closes Ready.
func (d *Daemon) announce(a *agent.Agent, ds doors) {
	cfg := d.opts.Config
	d.mu.Lock()
	d.agent, d.metricsLn, d.endpointLn, d.started = a, ds.addr(doorMetrics), ds.addr(doorEndpoint), d.clock.Now()
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
	warnSelectors(cfg, d.log)
	if err := sdNotify("READY=1"); err != nil {
		d.log.Warn().Err(err).Msg("cannot notify systemd of readiness")
	}
	d.readyOnce()
}

// shutdown tells systemd, then stops the doors: each drains its requests
// in flight (see drain), the socket last.
func (d *Daemon) shutdown(ds doors, a *agent.Agent) {
	sdNotify("STOPPING=1")
	d.log.Info().Msg("shutting down: finishing requests in flight")
	ds.stop(d, a)
}

// checkDirs applies the trust rule (CheckDirs) as the agent's own user,
// and makes and checks the directories of file sinks.
func (d *Daemon) checkDirs() error {
	if err := CheckDirs(d.opts.Config, d.opts.ConfigPath, d.opts.Socket, os.Geteuid()); err != nil {
		return err
	}
	// A sink directory is stricter (no sticky exception, no link) and made
	// now by the agent itself, so no other user can make it first.
	for _, dir := range d.opts.Config.SinkDirs() {
		if err := filesink.MakeDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// CheckDirs applies the trust rule to every directory an agent running as
// uid with cfg (read from configPath, "" if from elsewhere) on socket will
// keep something in or read a key from: the socket's, the audit log's,
// the store's, the configuration's (where the default store key is
// created) and those of store_key files. It makes and changes nothing: start (Run) and
// `tokenagentd check-config` both call it, so that check-config refuses
// what start would.
func CheckDirs(cfg *config.Config, configPath, socket string, uid int) error {
	dirs := [][2]string{{"socket directory", filepath.Dir(socket)}}
	if p := cfg.AuditLog; p != "" {
		dirs = append(dirs, [2]string{"audit log directory", filepath.Dir(p)})
	}
	if p := cfg.StorePath(); p != "" {
		dirs = append(dirs, [2]string{"store directory", filepath.Dir(p)})
	}
	if configPath != "" {
		dirs = append(dirs, [2]string{"configuration directory", filepath.Dir(configPath)})
	}
	for _, key := range cfg.KeyFiles() {
		dirs = append(dirs, [2]string{"store key directory", filepath.Dir(key)})
	}
	for _, dir := range dirs {
		if err := checkTrustedDir(dir[0], dir[1], uid); err != nil {
			return err
		}
	}
	return nil
}
