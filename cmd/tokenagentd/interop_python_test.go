package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

// The Python interop test runs the requests-oauthlib snippet of
// docs/providers.md, as written there, with nothing but the environment
// `tokenagent env --for oauth` prints. It needs python3 and Debian's
// python3-requests-oauthlib; like the rest of the interop suite it runs
// only when asked (TOKENAGENT_INTEROP=required, as .ci/run sets, or
// -interop), and then fails rather than skips on what is missing.

const pythonHowTo = "run it with: apt-get install python3-requests-oauthlib && TOKENAGENT_INTEROP=required go test -run Python ./cmd/tokenagentd/ (or -interop)"

// pythonProcesses is how many separate Python processes ask at once.
const pythonProcesses = 20

// TestInteropPythonRequestsOAuthlib: 20 Python processes running the
// documented snippet get the same token for one IdP request; without
// OAUTHLIB_INSECURE_TRANSPORT, which env prints for the plain endpoint,
// oauthlib refuses the http:// URL. Over token_endpoint_https, configured
// by env --for python --https, 20 more need no opt-in and get the same
// token; trusting only the host's CAs they are refused.
func TestInteropPythonRequestsOAuthlib(t *testing.T) {
	if !interopAsked() {
		t.Skip("interop tests are off; " + pythonHowTo)
	}
	// Debian's python3, where Debian's package installs the library (a
	// python3 earlier on PATH, pyenv's say, would not have it).
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		if python, err = exec.LookPath("python3"); err != nil {
			t.Fatal("no python3; " + pythonHowTo)
		}
	}
	if out, err := exec.Command(python, "-c", "import requests_oauthlib").CombinedOutput(); err != nil {
		t.Fatalf("python3 has no requests_oauthlib (%s); %s", strings.TrimSpace(string(out)), pythonHowTo)
	}
	snippet := docSnippet(t, "../../docs/providers.md", "Python, requests-oauthlib", "```python\n")

	const idpClient, idpSecret = "orders-service", "idp-secret-never-leaves-the-agent"
	idp := idptest.New()
	t.Cleanup(idp.Close)
	idp.AddClient(idptest.Client{ID: idpClient, Secret: idpSecret, Method: "client_secret_basic"})
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.toml")
	writeConfig(t, config, `store = "memory"
token_endpoint = "127.0.0.1:0"
token_endpoint_https = "127.0.0.1:0"

[profiles.orders]
token_url = "`+idp.TokenURL+`"
client_id = "`+idpClient+`"
client_secret = "`+idpSecret+`"
scopes = ["orders:read"]
`)
	d := startDaemon(t, config)
	envFor := func(args ...string) ([]string, string) {
		t.Helper()
		out, err := exec.Command(buildCLI(t), append([]string{"env", "orders", "--socket", d.socket}, args...)...).Output()
		if err != nil {
			t.Fatalf("tokenagent env orders %v: %v", args, err)
		}
		env := os.Environ()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if kv, ok := strings.CutPrefix(line, "export "); ok {
				name, quoted, _ := strings.Cut(kv, "=")
				env = append(env, name+"="+strings.Trim(quoted, "'"))
			}
		}
		return env, string(out)
	}
	env, out := envFor("--for", "oauth")
	if !strings.Contains(out, "export OAUTHLIB_INSECURE_TRANSPORT='1'") {
		t.Fatalf("env --for oauth on the plain endpoint does not set OAUTHLIB_INSECURE_TRANSPORT:\n%s", out)
	}

	run := func(env []string) (string, error) {
		cmd := exec.Command(python, "-c", snippet)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	all := func(env []string) string {
		t.Helper()
		tokens := concurrently(t, "Python (requests-oauthlib)", pythonProcesses, func(int) *exec.Cmd {
			cmd := exec.Command(python, "-c", snippet)
			cmd.Env = env
			return cmd
		})
		for i := range pythonProcesses {
			if tokens[i] != tokens[0] {
				t.Fatalf("Python process %d of %d: %.300s; want the token process 0 got", i, pythonProcesses, tokens[i])
			}
		}
		return tokens[0]
	}
	tokens := []string{all(env)}
	if claims, err := idp.VerifyToken(tokens[0]); err != nil || claims["client_id"] != idpClient {
		t.Errorf("the Python processes' token does not verify as %s's: %v %v", idpClient, claims, err)
	}
	if n := idp.Requests(idpClient); n != 1 {
		t.Errorf("%d Python processes through the agent cost the IdP %d token requests, want 1", pythonProcesses, n)
	}
	t.Logf("%d Python processes (requests-oauthlib, the docs' snippet): %d IdP token request(s)", pythonProcesses, idp.Requests(idpClient))

	var without []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OAUTHLIB_INSECURE_TRANSPORT=") {
			without = append(without, kv)
		}
	}
	if out, err := run(without); err == nil || !strings.Contains(out, "InsecureTransportError") {
		t.Errorf("the snippet without OAUTHLIB_INSECURE_TRANSPORT: %v %.300s; want oauthlib's InsecureTransportError (else env need not set it)", err, out)
	}

	// Over token_endpoint_https: no insecure opt-in, the agent's CA
	// trusted through what env --https prints, the same stream.
	env, out = envFor("--for", "python", "--https")
	if strings.Contains(out, "OAUTHLIB_INSECURE_TRANSPORT") || !strings.Contains(out, "export TOKEN_URL='https://127.0.0.1:") || !strings.Contains(out, "REQUESTS_CA_BUNDLE") {
		t.Fatalf("env --for python --https:\n%s", out)
	}
	if got := all(env); got != tokens[0] {
		t.Errorf("the Python processes over https got another token than over http")
	}
	if n := idp.Requests(idpClient); n != 1 {
		t.Errorf("after %d more Python processes over https: %d IdP token requests, want still 1", pythonProcesses, n)
	}
	var system []string // the same, trusting only the host's CAs: refused at the handshake
	for _, kv := range env {
		if !strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(kv, "SSL_CERT_FILE=") {
			system = append(system, kv)
		}
	}
	if out, err := run(system); err == nil || !strings.Contains(out, "CERTIFICATE_VERIFY_FAILED") {
		t.Errorf("the snippet over https trusting only the host's CAs: %v %.300s; want a certificate verification failure", err, out)
	}
	t.Logf("and %d more over token_endpoint_https with the agent's CA: still %d IdP token request(s)", pythonProcesses, idp.Requests(idpClient))
}

// docSnippet returns the code block that follows the first line holding
// marker in the Markdown file doc, opened by fence.
func docSnippet(t *testing.T, doc, marker, fence string) string {
	t.Helper()
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), marker)
	if ok {
		_, after, ok = strings.Cut(after, fence)
	}
	code, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatalf("%s has no %q block after %q", doc, strings.TrimSpace(fence), marker)
	}
	return code
}
