package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	sums := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cache := t.TempDir()
		wg.Go(func() {
			cmd := exec.Command(node, script)
			cmd.Env = append(os.Environ(),
				"ZEEBE_AUTHORIZATION_SERVER_URL="+tokenURL,
				"ZEEBE_CLIENT_ID="+clientID,
				"ZEEBE_CLIENT_SECRET="+secret,
				"ZEEBE_TOKEN_AUDIENCE="+zeebeAudience,
				"ZEEBE_TOKEN_CACHE_DIR="+cache,
				"ZEEBE_ADDRESS=127.0.0.1:26500")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				errs[i] = fmt.Errorf("%v: %s", err, stderr.String())
			}
			sums[i] = strings.TrimSpace(string(out))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("zeebe-node process %d of %d: %v", i, n, err)
		}
	}
	return sums
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
	const postSecret = "post-secret-0123456789"
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
`, s.Issuer+"/token", postSecret, zeebeAudience, interopResource))
	d := startDaemon(t, filepath.Join(dir, "agent.toml"))
	c := &clientlib.Client{Socket: d.socket}
	defer c.Close()
	endpoint, err := c.TokenEndpoint(context.Background())
	if err != nil || endpoint == "" {
		t.Fatalf("TokenEndpoint = %q, %v", endpoint, err)
	}

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
	if d.logCount(postSecret) != 0 {
		t.Errorf("the real client secret appears in the agent's log")
	}

	// The same run, pointed at the IdP directly.
	before = s.tokenRequests(t)
	zeebeWorkers(t, processes, s.Issuer+"/token", "post-client", postSecret)
	direct := s.tokenRequests(t) - before
	if direct != processes {
		t.Errorf("%d zeebe-node processes straight at the IdP cost %d token requests; want %d (each has its own cache, so each must ask)", processes, direct, processes)
	}
	t.Logf("%d concurrent zeebe-node processes, own cache directory each: IdP token requests through the agent %d, straight at the IdP %d",
		processes, agentRequests, direct)
}
