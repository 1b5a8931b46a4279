package bearer_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// The Examples run against a real agent (agenttest) that TOKENAGENT_SOCKET
// points at, so that the zero Client finds it as it would in production.
func TestMain(m *testing.M) {
	running, err := agenttest.Start(`
[profiles.zeebe]
token_url = "IDP"
client_id = "c"
client_secret = "bearer-secret"
`)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bearer tests:", err)
		os.Exit(1)
	}
	running.IdP.AddClient(idptest.Client{ID: "c", Secret: "bearer-secret", Method: "client_secret_basic"})
	os.Setenv(ipc.EnvSocket, running.Socket)
	code := m.Run()
	running.Close()
	os.Exit(code)
}
