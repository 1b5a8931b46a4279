// Package agenttest runs a complete agent for tests and benchmarks: an
// in-process identity provider (idptest), the engine, and the socket
// server on a socket in a fresh temporary directory. Nothing is mocked.
package agenttest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// Running is a started agent.
type Running struct {
	IdP    *idptest.Server
	Agent  *agent.Agent
	Socket string
	// Dir holds the socket; every user may traverse it, so that child
	// processes of other uids can reach a socket with a permissive mode.
	Dir string

	server *ipc.Server
}

// Start runs an agent for config, a TOML document in which IDP stands for
// the in-process IdP's token URL. The IdP has no clients yet: add them
// before the first request. It uses store = "memory" unless the config
// names a store.
func Start(config string) (*Running, error) {
	r := &Running{IdP: idptest.New()}
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
	config = strings.ReplaceAll(config, "IDP", r.IdP.TokenURL)
	if !strings.Contains(config, "store =") {
		config = "store = \"memory\"\n" + config
	}
	cfg, err := agent.ParseConfig([]byte(config), filepath.Join(r.Dir, "agent.toml"))
	if err != nil {
		return nil, err
	}
	if r.Agent, err = agent.New(cfg, agent.Options{}); err != nil {
		return nil, err
	}
	r.Socket = filepath.Join(r.Dir, "run", "agent.sock")
	ln, err := cfg.Listen(r.Socket)
	if err != nil {
		return nil, fmt.Errorf("agenttest: %w", err)
	}
	r.server = ipc.NewServer(ipc.ServerConfig{Backend: r.Agent.Backend(), AgentUID: ipc.AgentUID()})
	go r.server.Serve(ln)
	ok = true
	return r, nil
}

// Close stops everything and removes the directory.
func (r *Running) Close() {
	if r.server != nil {
		r.server.Shutdown(context.Background())
	}
	if r.Agent != nil {
		r.Agent.Close()
	}
	r.IdP.Close()
	if r.Dir != "" {
		os.RemoveAll(r.Dir)
	}
}
