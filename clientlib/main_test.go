package clientlib_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// The tests and Examples share one real agent: an idptest IdP, the engine,
// and the socket server on a temporary socket that TOKENAGENT_SOCKET
// points at, so the zero Client finds it as it would in production.
var (
	testIdP    *idptest.Server
	testSocket string
)

func TestMain(m *testing.M) {
	code, err := runWithAgent(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clientlib tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runWithAgent(m *testing.M) (int, error) {
	testIdP = idptest.New()
	defer testIdP.Close()
	testIdP.AddClient(idptest.Client{ID: "c", Secret: "clientlib-secret", Method: "client_secret_basic"})
	testIdP.AddClient(idptest.Client{ID: "nobody-may", Secret: "x", Method: "client_secret_basic"})
	dir, err := os.MkdirTemp("", "clientlib-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cfg, err := agent.ParseConfig(fmt.Appendf(nil, `store = "memory"
[profiles.zeebe]
token_url = %[1]q
client_id = "c"
client_secret = "clientlib-secret"

[profiles.api]
token_url = %[1]q
client_id = "c"
client_secret = "clientlib-secret"
scopes = ["api"]

[profiles.broken]
token_url = %[1]q
client_id = "c"
client_secret = "wrong-secret"
`, testIdP.TokenURL), "clientlib.toml")
	if err != nil {
		return 0, err
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		return 0, err
	}
	defer a.Close()
	testSocket = filepath.Join(dir, "agent.sock")
	ln, err := cfg.Listen(testSocket)
	if err != nil {
		return 0, err
	}
	srv := ipc.NewServer(ipc.ServerConfig{Backend: a.Backend(), AgentUID: ipc.AgentUID()})
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	os.Setenv(ipc.EnvSocket, testSocket)
	return m.Run(), nil
}
