package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/ipc"
)

// zeebeAudience is what the Zeebe workers ask for; the profile names the
// same audience, so the agent's token is valid for them.
const zeebeAudience = "zeebe-api"

// zeebeWorkers runs n concurrent short-lived Node.js processes, each a
// zeebe-node ZBClient configured from the environment with token URL
// tokenURL, and returns the SHA-256 of the token each one got. Each
// process has a cache directory of its own, as a fresh container or job
// has.
func zeebeWorkers(t *testing.T, n int, tokenURL, clientID, secret string) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("testdata/interop/zeebe-token.mjs")
	if err != nil {
		t.Fatal(err)
	}
	return concurrently(t, "zeebe-node", n, func(int) *exec.Cmd {
		cmd := exec.Command(node, script)
		cmd.Env = append(os.Environ(),
			"ZEEBE_AUTHORIZATION_SERVER_URL="+tokenURL,
			"ZEEBE_CLIENT_ID="+clientID,
			"ZEEBE_CLIENT_SECRET="+secret,
			"ZEEBE_TOKEN_AUDIENCE="+zeebeAudience,
			"ZEEBE_TOKEN_CACHE_DIR="+t.TempDir(),
			"ZEEBE_ADDRESS=127.0.0.1:26500")
		return cmd
	})
}

// TestInteropZeebeNodeSharesOneStream is the mission in one test: 50
// concurrent zeebe-node processes, the seeds' own client, unmodified,
// with their token URL set to the agent's loopback endpoint, cost the
// IdP (oidc-provider) exactly one token request. The same processes
// pointed at the IdP directly show what they cost without the agent;
// both figures go in docs/benchmarks.md.
func TestInteropZeebeNodeSharesOneStream(t *testing.T) {
	if testing.Short() {
		t.Skip("100 Node.js processes take about a minute; run without -short (CI does)")
	}
	s := interop(t)
	const processes = 50
	d, c, endpoint := zeebeAgent(t, s)

	before := s.tokenRequests(t)
	viaAgent := zeebeWorkers(t, processes, endpoint, "zeebe", "not-the-real-secret")
	agentRequests := s.tokenRequests(t) - before
	for i, sum := range viaAgent {
		if sum != viaAgent[0] || len(sum) != 64 {
			t.Fatalf("process %d got token %q, process 0 %q: want one token for all", i, sum, viaAgent[0])
		}
	}
	if agentRequests != 1 {
		t.Errorf("%d zeebe-node processes through the agent cost the IdP %d token requests, want 1", processes, agentRequests)
	}
	tok, err := c.Token(context.Background(), "zeebe")
	if err != nil {
		t.Fatal(err)
	}
	if ipc.TokenSHA256(tok.AccessToken) != viaAgent[0] {
		t.Errorf("the workers' token is not the agent's current token for the profile")
	}
	s.verify(t, tok.AccessToken, "post-client", "api:read")
	if d.logCount(zeebePostSecret) != 0 {
		t.Errorf("the real client secret appears in the agent's log")
	}

	// The same run, pointed at the IdP directly.
	before = s.tokenRequests(t)
	zeebeWorkers(t, processes, s.Issuer+"/token", "post-client", zeebePostSecret)
	direct := s.tokenRequests(t) - before
	if direct != processes {
		t.Errorf("%d zeebe-node processes straight at the IdP cost %d token requests; want %d (each has its own cache, so each must ask)", processes, direct, processes)
	}
	t.Logf("%d concurrent zeebe-node processes, own cache directory each: IdP token requests through the agent %d, straight at the IdP %d",
		processes, agentRequests, direct)
}

// zeebePostSecret is oidc-provider's secret for post-client.
const zeebePostSecret = "post-secret-0123456789"

// zeebeAgent starts an agent with a profile "zeebe" for oidc-provider's
// post-client and its loopback token endpoint; it returns the agent, a
// client of its socket and the endpoint's URL.
func zeebeAgent(t *testing.T, s *oidcServer) (*agentProc, *clientlib.Client, string) {
	t.Helper()
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "agent.toml"), fmt.Sprintf(`store = "memory"
token_endpoint = "127.0.0.1:0"

[profiles.zeebe]
token_url = %q
client_id = "post-client"
client_secret = %q
auth = "client_secret_post"
audience = %q
resource = [%q]
scopes = ["api:read"]
`, s.Issuer+"/token", zeebePostSecret, zeebeAudience, interopResource))
	d := startDaemon(t, filepath.Join(dir, "agent.toml"))
	c := &clientlib.Client{Socket: d.socket}
	t.Cleanup(func() { c.Close() })
	endpoint, err := c.TokenEndpoint(context.Background())
	if err != nil || endpoint == "" {
		t.Fatalf("TokenEndpoint = %q, %v", endpoint, err)
	}
	return d, c, endpoint
}

// TestInteropClientsConfiguredByTokenagentEnv: what `tokenagent env
// --for zeebe|camunda` prints is all each real client needs. A shell
// evals it, as the docs say, and runs zeebe-node or the Camunda 8 SDK with
// no other setting; both get the agent's token for the profile.
func TestInteropClientsConfiguredByTokenagentEnv(t *testing.T) {
	s := interop(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	_, c, _ := zeebeAgent(t, s)
	tok, err := c.Token(context.Background(), "zeebe")
	if err != nil {
		t.Fatal(err)
	}
	cli := buildCLI(t)
	for _, tc := range []struct{ forClient, script string }{
		{"zeebe", "zeebe-token.mjs"},
		{"camunda", "camunda-token.mjs"},
	} {
		t.Run(tc.forClient, func(t *testing.T) {
			script, _ := filepath.Abs(filepath.Join("testdata/interop", tc.script))
			cmd := exec.Command("/bin/sh", "-c", `eval "$("$CLI" env zeebe --for "$FOR" --socket "$SOCK")" && exec "$NODE" "$SCRIPT"`)
			home := t.TempDir()
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "CLI=" + cli, "FOR=" + tc.forClient, "SOCK=" + c.Socket,
				"NODE=" + node, "SCRIPT=" + script}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("eval \"$(tokenagent env zeebe --for %s)\" && node %s: %v\n%s", tc.forClient, tc.script, err, stderr.String())
			}
			if got := strings.TrimSpace(string(out)); got != ipc.TokenSHA256(tok.AccessToken) {
				t.Errorf("%s got token sha256 %q, want the agent's %q", tc.script, got, ipc.TokenSHA256(tok.AccessToken))
			}
			// The Camunda SDK was told not to keep its own copy on disk.
			if tc.forClient == "camunda" {
				if entries, _ := os.ReadDir(filepath.Join(home, ".camunda")); len(entries) != 0 {
					t.Errorf("the Camunda SDK cached the token on disk in %s: %d files", filepath.Join(home, ".camunda"), len(entries))
				}
			}
		})
	}
}
