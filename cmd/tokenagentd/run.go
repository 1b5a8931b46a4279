package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/agent/demoidp"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/ipc"
)

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("")
	configPath := fs.String("config", "", "configuration `file`")
	dev := fs.Bool("dev", false, "run with a built-in demo identity provider and a \"demo\" profile")
	socketFlag := fs.String("socket", "", "socket `path`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.UsageError{Msg: fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	if *dev && *configPath != "" {
		return cli.UsageError{Msg: "--dev and --config are exclusive"}
	}

	var cfg *config.Config
	var reloadPath string
	socket := *socketFlag
	if *dev {
		demo, demoCfg, err := startDemoIdP()
		if err != nil {
			return err
		}
		defer demo.Close()
		cfg = demoCfg
		if socket == "" && os.Getenv(ipc.EnvSocket) == "" {
			// A socket of its own, so --dev never collides with an installed agent.
			dir, err := os.MkdirTemp("", "tokenagent-dev-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			socket = filepath.Join(dir, "agent.sock")
		}
	} else {
		path, err := absPath(*configPath)
		if err != nil {
			return err
		}
		if cfg, err = loadConfig(path); err != nil {
			return err
		}
		if filepath.IsAbs(cfg.Path()) {
			reloadPath = cfg.Path()
		}
	}
	log := daemon.NewLogger(cfg, stderr)
	if err := hardenProcess(); err != nil {
		log.Warn().Err(err).Msg("could not make the process non-dumpable or turn core dumps off")
	}
	d, err := daemon.New(daemon.Options{
		Config: cfg, ConfigPath: reloadPath, Logger: &log, Version: versionString(), HideEnvSecrets: true, ManageMemory: true,
		Socket: ipc.SocketPath(socket, cfg.Socket),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	if *dev {
		select {
		case <-d.Ready():
			if a := d.Agent(); a != nil {
				if err := devHints(ctx, a, d.Socket(), log, stderr); err != nil {
					cancel()
					<-done
					return err
				}
			}
		case err := <-done:
			return err
		}
	}
	return <-done
}

// startDemoIdP starts the demo IdP with one client and returns a
// configuration with a "demo" profile for it. Tokens live two minutes so
// that background refresh is visible in the log.
func startDemoIdP() (*demoidp.Server, *config.Config, error) {
	srv, err := demoidp.Start("demo", 2*time.Minute)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf(`
store = "memory"
idle_after = "24h"
token_endpoint = "127.0.0.1:0"
[profiles.demo]
token_url = %q
client_id = %q
client_secret = %q
scopes = ["demo.read"]
`, srv.TokenURL, srv.ClientID, srv.ClientSecret)), "(built-in --dev configuration)")
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, cfg, nil
}

// devHints fetches the demo token once and says what to try next, with
// the commands as this binary was invoked (go run, or a built binary).
func devHints(ctx context.Context, a *agent.Agent, socket string, log zerolog.Logger, stderr io.Writer) error {
	self := ipc.Caller{UID: uint32(os.Geteuid())}
	tok, err := a.Token(ctx, self, "demo", 0)
	if err != nil {
		return fmt.Errorf("demo profile: %w", err)
	}
	log.Info().Str("profile", "demo").Str("token_sha256", ipc.Fingerprint(tok.AccessToken)).Time("expires_at", tok.ExpiresAt).
		Msg("demo token ready; the agent refreshes it in the background before it expires (Ctrl-C to stop)")
	cli := "tokenagent"
	if isGoRun() {
		cli = "go run ./cmd/tokenagent"
	}
	fmt.Fprintf(stderr, "\nTry, in another terminal:\n\n"+
		"  export TOKENAGENT_SOCKET=%[1]s\n"+
		"  %[2]s token demo --format header\n"+
		"  %[2]s status\n"+
		"  eval \"$(%[2]s env demo --for oauth)\"   # an unmodified OAuth client's settings\n"+
		"  curl --unix-socket %[1]s http://tokenagent/v1/tokens/demo\n\n", socket, cli)
	return nil
}

// isGoRun reports whether this process is a binary that `go run` built
// (it lives in a go-build directory of the build cache).
func isGoRun() bool {
	exe, err := os.Executable()
	return err == nil && strings.Contains(exe, string(filepath.Separator)+"go-build")
}
