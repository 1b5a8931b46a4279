package clientlib_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// The tests and Examples share one real agent: an idptest IdP, the engine,
// and the socket server on a temporary socket that TOKENAGENT_SOCKET
// points at, so the zero Client finds it as it would in production.
var (
	testIdP     *idptest.Server
	testSocket  string
	testRunning *agenttest.Running
)

func TestMain(m *testing.M) {
	if sock := os.Getenv(vocabularySocketEnv); sock != "" {
		os.Exit(vocabularyClient(sock)) // a child of TestSameErrorsBothSides
	}
	code, err := runWithAgent(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clientlib tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runWithAgent(m *testing.M) (int, error) {
	running, err := agenttest.StartWith(`
[profiles.zeebe]
token_url = "IDP"
client_id = "c"
client_secret = "clientlib-secret"

[profiles.api]
token_url = "IDP"
client_id = "c"
client_secret = "clientlib-secret"
scopes = ["api"]

[profiles.rejected]
token_url = "IDP"
client_id = "c"
client_secret = "clientlib-secret"

[profiles.broken]
token_url = "IDP"
client_id = "c"
client_secret = "wrong-secret"
`, agenttest.Options{Observe: conns.observe})
	if err != nil {
		return 0, err
	}
	defer running.Close()
	testIdP, testSocket, testRunning = running.IdP, running.Socket, running
	testIdP.AddClient(idptest.Client{ID: "c", Secret: "clientlib-secret", Method: "client_secret_basic"})
	os.Setenv(ipc.EnvSocket, testSocket)
	return m.Run(), nil
}

// conns counts the connections the agent saw requests on.
var conns connCounter

type connCounter struct {
	mu  sync.Mutex
	ids map[uint64]bool
}

func (c *connCounter) observe(ev door.RequestEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[uint64]bool{}
	}
	c.ids[ev.Conn] = true
}

func (c *connCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}
