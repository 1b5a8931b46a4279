package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/ipc"
)

// The HTTPS interop test runs clients that refuse a plain-http token URL
// — msal-node, openid-client and oauth4webapi (npm, pinned in
// testdata/interop) and MSAL Python (Debian's python3-msal) — with only
// their configuration pointed at the agent's token_endpoint_https,
// trusting the agent's CA through what `tokenagent env --https` prints,
// and no insecure opt-in. Like the rest of the
// interop suite it runs only when asked, and then fails rather than skips
// on what is missing.

const msalHowTo = "run it with: (cd cmd/tokenagentd/testdata/interop && npm ci) && apt-get install python3-msal && TOKENAGENT_INTEROP=required go test -run HTTPS ./cmd/tokenagentd/ (or -interop)"

// msalProcesses is how many separate processes of each library ask at once.
const msalProcesses = 20

// TestInteropHTTPSClients: 20 processes each of msal-node and MSAL Python
// (ConfidentialClientApplication, client credentials), openid-client and
// oauth4webapi (discovery, then client credentials) get the agent's one
// token for one IdP request, over the HTTPS endpoint.
func TestInteropHTTPSClients(t *testing.T) {
	if !interopAsked() {
		t.Skip("interop tests are off; " + msalHowTo)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("no node; " + msalHowTo)
	}
	if !npmInstalled("testdata/interop", "@azure/msal-node", "openid-client", "oauth4webapi") {
		t.Fatal("@azure/msal-node, openid-client or oauth4webapi is not installed; " + msalHowTo)
	}
	python := "/usr/bin/python3" // Debian's, where python3-msal is
	if out, err := exec.Command(python, "-c", "import msal").CombinedOutput(); err != nil {
		t.Fatalf("Debian's python3 has no msal (%s); %s", strings.TrimSpace(string(out)), msalHowTo)
	}
	nodeScript, _ := filepath.Abs("testdata/interop/msal-token.mjs")
	oidcScript, _ := filepath.Abs("testdata/interop/oidc-token.mjs")
	pyScript, _ := filepath.Abs("testdata/msal_token.py")

	const idpClient, idpSecret, scope = "orders-service", "idp-secret-never-leaves-the-agent", "api://orders/.default"
	idp := idptest.New()
	t.Cleanup(idp.Close)
	idp.AddClient(idptest.Client{ID: idpClient, Secret: idpSecret, Method: "client_secret_post"})
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.toml")
	writeConfig(t, config, fmt.Sprintf(`store = "memory"
token_endpoint_https = "127.0.0.1:0"

[profiles.orders]
token_url = %q
client_id = %q
client_secret = %q
auth = "client_secret_post"
scopes = [%q]
`, idp.TokenURL, idpClient, idpSecret, scope))
	d := startDaemon(t, config)
	cl := &clientlib.Client{Socket: d.socket}
	t.Cleanup(func() { cl.Close() })
	tok, err := cl.Token(context.Background(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	want := ipc.TokenSHA256(tok.AccessToken)

	for _, tc := range []struct {
		lib, runtime string
		argv         []string
	}{
		{"msal-node", "node", []string{node, nodeScript}},
		{"MSAL Python", "python", []string{python, pyScript}},
		{"openid-client", "node", []string{node, oidcScript, "openid-client"}},
		{"oauth4webapi", "node", []string{node, oidcScript, "oauth4webapi"}},
	} {
		out, err := exec.Command(buildCLI(t), "env", "orders", "--for", tc.runtime, "--https", "--socket", d.socket).Output()
		if err != nil {
			t.Fatalf("tokenagent env orders --for %s --https: %v", tc.runtime, err)
		}
		env := os.Environ()
		authority := ""
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if kv, ok := strings.CutPrefix(line, "export "); ok {
				name, quoted, _ := strings.Cut(kv, "=")
				value := strings.Trim(quoted, "'")
				env = append(env, name+"="+value)
				if name == "TOKEN_URL" {
					// MSAL's authority is https://HOST/TENANT; any tenant.
					authority = strings.TrimSuffix(value, "/oauth2/token") + "/contoso"
					env = append(env, "ISSUER="+strings.TrimSuffix(value, "/oauth2/token"))
				}
			}
		}
		if !strings.HasPrefix(authority, "https://127.0.0.1:") {
			t.Fatalf("env --for %s --https printed no https TOKEN_URL:\n%s", tc.runtime, out)
		}
		env = append(env, "AUTHORITY="+authority)
		sums := concurrently(t, tc.lib, msalProcesses, func(int) *exec.Cmd {
			cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
			cmd.Env = env
			return cmd
		})
		for i := range msalProcesses {
			if sums[i] != want {
				t.Fatalf("%s process %d of %d: token sha256 %q; want the agent's %q", tc.lib, i, msalProcesses, sums[i], want)
			}
		}
		t.Logf("%d %s processes (authority %s): the agent's token, %d IdP token request(s) so far", msalProcesses, tc.lib, authority, idp.Requests(idpClient))
	}
	if n := idp.Requests(idpClient); n != 1 {
		t.Errorf("%d processes of each of four libraries through the agent cost the IdP %d token requests, want 1", msalProcesses, n)
	}
}
