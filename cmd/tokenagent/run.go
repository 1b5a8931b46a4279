package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	configPath := fs.String("config", "", "configuration `file` (default: /etc/tokenagent/agent.toml as root, else $XDG_CONFIG_HOME/tokenagent/agent.toml)")
	dev := fs.Bool("dev", false, "run with a built-in demo identity provider and a \"demo\" profile")
	socketFlag := fs.String("socket", "", "socket `path` (default: $TOKENAGENT_SOCKET, the config's socket, then /run/tokenagent/agent.sock as root or $XDG_RUNTIME_DIR/tokenagent/agent.sock)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("run takes no arguments, got %q", fs.Args())}
	}
	if *dev && *configPath != "" {
		return usageError{"--dev and --config are exclusive"}
	}

	var cfg *agent.Config
	configFile := *configPath
	if *dev {
		demo, demoCfg, err := startDemoIdP()
		if err != nil {
			return err
		}
		defer demo.Close()
		cfg = demoCfg
		if *socketFlag == "" && os.Getenv(ipc.EnvSocket) == "" {
			// A socket of its own, so --dev never collides with an installed agent.
			dir, err := os.MkdirTemp("", "tokenagent-dev-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			*socketFlag = filepath.Join(dir, "agent.sock")
		}
	} else {
		var err error
		if cfg, err = loadConfig(configFile); err != nil {
			return err
		}
		configFile = cfg.Path()
	}
	log := newLogger(cfg, stderr)
	st, err := agent.OpenStore(cfg)
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close() // after the agent's Close: no fetch writes any more
	}
	a, err := agent.New(cfg, agent.Options{Logger: &log, Store: st})
	if err != nil {
		return err
	}
	defer a.Close()
	storeDesc := "memory"
	if st != nil {
		storeDesc = st.Path()
	}
	socket := ipc.SocketPath(*socketFlag, cfg.Socket)
	ln, err := cfg.Listen(socket)
	if err != nil {
		return err
	}
	srv := ipc.NewServer(ipc.ServerConfig{Backend: a.Backend(), Observe: logRequests(log), AgentUID: ipc.AgentUID()})
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics_listen %s: %w", cfg.MetricsListen, err)
		}
		msrv := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { served <- msrv.Serve(mln) }()
		defer msrv.Close()
		log.Info().Str("metrics_listen", mln.Addr().String()).Msg("serving /metrics over TCP")
	}
	log.Info().Str("config", cfg.Path()).Str("socket", socket).Str("store", storeDesc).
		Strs("profiles", cfg.ProfileNames()).Str("version", versionString()).Msg("agent started")

	if *dev {
		tok, err := a.Token(ctx, "demo", 0)
		if err != nil {
			return fmt.Errorf("demo profile: %w", err)
		}
		log.Info().Str("profile", "demo").Str("token_sha256", agent.Fingerprint(tok.AccessToken)).
			Time("expires_at", tok.ExpiresAt).
			Msg("demo token ready; the agent refreshes it in the background before it expires (Ctrl-C to stop)")
		fmt.Fprintf(stderr, "\nTry, in another terminal:\n\n"+
			"  curl --unix-socket %[1]s http://tokenagent/v1/tokens/demo\n"+
			"  export TOKENAGENT_SOCKET=%[1]s\n"+
			"  go run ./cmd/tokenagent token demo --format header\n"+
			"  go run ./cmd/tokenagent status\n\n", socket)
	}
	if err := sdNotify("READY=1"); err != nil {
		log.Warn().Err(err).Msg("cannot notify systemd of readiness")
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case err := <-served:
			return fmt.Errorf("serving: %w", err)
		case <-hup:
			if next := reload(a, configFile, *dev, log); next != nil {
				warnRestartOnly(cfg, next, log)
				cfg = next
			}
		}
	}
	sdNotify("STOPPING=1")
	log.Info().Msg("shutting down: finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn().Err(err).Msg("requests still in flight at shutdown were cut off")
	}
	return nil
}

// reload re-reads the configuration file on SIGHUP and returns it once
// applied. A file that does not load, or a profile that cannot be built,
// leaves the running configuration in place (nil); the log says why.
func reload(a *agent.Agent, path string, dev bool, log zerolog.Logger) *agent.Config {
	if dev || !filepath.IsAbs(path) {
		log.Info().Msg("SIGHUP: no configuration file to reload (--dev or environment variables)")
		return nil
	}
	sdNotify("RELOADING=1")
	defer sdNotify("READY=1")
	log.Info().Str("config", path).Msg("SIGHUP: reloading configuration")
	cfg, err := agent.LoadConfig(path)
	if err == nil {
		_, err = a.Reload(cfg)
	}
	if err != nil {
		log.Error().Err(err).Str("config", path).Msg("reload rejected; still running the previous configuration")
		return nil
	}
	return cfg
}

// warnRestartOnly says which changed settings a reload cannot apply.
func warnRestartOnly(old, next *agent.Config, log zerolog.Logger) {
	for _, s := range []struct {
		key       string
		was, then string
	}{
		{"socket", old.Socket, next.Socket},
		{"socket_mode", old.SocketMode, next.SocketMode},
		{"socket_group", old.SocketGroup, next.SocketGroup},
		{"max_connections", fmt.Sprint(old.MaxConnections), fmt.Sprint(next.MaxConnections)},
		{"metrics_listen", old.MetricsListen, next.MetricsListen},
		{"store", old.Store, next.Store},
		{"store_key", old.StoreKey, next.StoreKey},
		{"store_key_previous", fmt.Sprint(old.StoreKeyPrevious), fmt.Sprint(next.StoreKeyPrevious)},
		{"log_level", old.LogLevel, next.LogLevel},
		{"log_format", old.LogFormat, next.LogFormat},
	} {
		if s.was != s.then {
			log.Warn().Str("setting", s.key).Msg("changed in the file, but applies only at start: restart the agent to use it")
		}
	}
}

// startDemoIdP starts the in-process IdP with one client and returns a
// configuration with a "demo" profile for it. Tokens live two minutes so
// that background refresh is visible in the log.
func startDemoIdP() (*idptest.Server, *agent.Config, error) {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, nil, err
	}
	secret := hex.EncodeToString(b[:])
	srv := idptest.New()
	srv.AddClient(idptest.Client{ID: "demo", Secret: secret, Method: "client_secret_basic"})
	srv.SetTTL(2 * time.Minute)
	cfg, err := agent.ParseConfig([]byte(fmt.Sprintf(`
store = "memory"
idle_after = "24h"
[profiles.demo]
token_url = %q
client_id = "demo"
client_secret = %q
scopes = ["demo.read"]
`, srv.TokenURL, secret)), "(built-in --dev configuration)")
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, cfg, nil
}

// newLogger logs to w: console format on a terminal, JSON otherwise,
// unless the configuration says which.
func newLogger(cfg *agent.Config, w io.Writer) zerolog.Logger {
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
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || cfg.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
