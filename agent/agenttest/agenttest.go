// Package agenttest runs a complete agent for tests and benchmarks: an
// in-process identity provider (idptest) and the daemon — the same wiring
// tokenagentd runs — on a socket in a fresh temporary directory. Nothing
// is mocked.
package agenttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// Running is a started agent.
type Running struct {
	IdP    *idptest.Server
	Daemon *daemon.Daemon
	Agent  *agent.Agent
	Socket string
	// TokenEndpoint is the loopback token endpoint's URL when the config
	// sets token_endpoint ("127.0.0.1:0" picks a free port).
	TokenEndpoint string
	// Dir holds the socket; every user may traverse it, so that child
	// processes of other uids can reach a socket with a permissive mode.
	Dir string

	stop context.CancelFunc
	done chan error
}

// Options adjust Start; the zero value is fine.
type Options struct {
	// Log receives the daemon's log as tokenagentd writes it
	// (daemon.NewLogger: the config's log_level, info by default, and
	// log_format, JSON unless w is a terminal); nil discards it.
	Log io.Writer
	// Observe and ReadHeaderTimeout are passed to the daemon.
	Observe           func(door.RequestEvent)
	ReadHeaderTimeout time.Duration
	// ShutdownGrace is passed to the daemon (0: its default).
	ShutdownGrace time.Duration
	// Clients are added to the IdP before the daemon starts: a profile
	// with a file sink is fetched at start, before Start returns.
	Clients []idptest.Client
}

// Start runs an agent for text, a TOML document in which IDP stands for
// the in-process IdP's token URL. The IdP has no clients yet: add them
// before the first request (or, for profiles with file sinks, which are
// fetched at start, in Options.Clients). It uses store = "memory" unless the config
// names a store.
func Start(text string) (*Running, error) { return StartWith(text, Options{}) }

// StartWith is Start with options.
func StartWith(text string, opts Options) (*Running, error) {
	r := &Running{IdP: idptest.New()}
	for _, c := range opts.Clients {
		r.IdP.AddClient(c)
	}
	ok := false
	defer func() {
		if !ok {
			r.Close()
		}
	}()
	var err error
	if r.Dir, err = os.MkdirTemp("", "tokenagent-test-"); err != nil {
		return nil, err
	}
	os.Chmod(r.Dir, 0o755)
	text = strings.ReplaceAll(text, "IDP", r.IdP.TokenURL)
	if !strings.Contains(text, "store =") {
		text = "store = \"memory\"\n" + text
	}
	path := filepath.Join(r.Dir, "agent.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, err
	}
	cfg, err := secretref.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	log := zerolog.Nop()
	if opts.Log != nil {
		log = daemon.NewLogger(cfg, opts.Log)
	}
	r.Socket = filepath.Join(r.Dir, "run", "agent.sock")
	r.Daemon, err = daemon.New(daemon.Options{Config: cfg, ConfigPath: path, Socket: r.Socket, Logger: &log, NoSignals: true,
		Observe: opts.Observe, ReadHeaderTimeout: opts.ReadHeaderTimeout, ShutdownGrace: opts.ShutdownGrace})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	r.stop, r.done = stop, make(chan error, 1)
	go func() { r.done <- r.Daemon.Run(ctx) }()
	select {
	case <-r.Daemon.Ready():
	case err := <-r.done:
		r.done <- err
	}
	if r.Agent = r.Daemon.Agent(); r.Agent == nil {
		return nil, fmt.Errorf("agenttest: %w", r.wait())
	}
	if addr := r.Daemon.TokenEndpointAddr(); addr != nil {
		r.TokenEndpoint = "http://" + addr.String() + "/oauth2/token"
	}
	ok = true
	return r, nil
}

// wait stops the daemon and returns what Run returned.
func (r *Running) wait() error {
	if r.stop == nil {
		return nil
	}
	r.stop()
	err := <-r.done
	r.done <- err // Close may wait again
	if err == nil {
		return errors.New("daemon stopped")
	}
	return err
}

// Stop stops the daemon (its doors drain, then the engine closes) and
// returns what Run returned; the IdP and the directory stay until Close.
func (r *Running) Stop() error {
	if r.stop == nil {
		return nil
	}
	r.stop()
	err := <-r.done
	r.stop = nil
	return err
}

// Close stops everything and removes the directory.
func (r *Running) Close() {
	if r.stop != nil {
		r.stop()
		<-r.done
		r.stop = nil
	}
	r.IdP.Close()
	if r.Dir != "" {
		os.RemoveAll(r.Dir)
	}
}

// Budget is the budget of profile for kind ("profile" or "client_id") as
// a's status shows it; ok false when the profile has none.
func Budget(a *agent.Agent, profile, kind string) (b ipc.BudgetInfo, ok bool) {
	for _, st := range a.Status() {
		for _, b := range st.Budgets {
			if st.Name == profile && b.For == kind {
				return b, true
			}
		}
	}
	return ipc.BudgetInfo{}, false
}
