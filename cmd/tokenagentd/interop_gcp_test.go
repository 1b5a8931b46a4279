package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

// The Google interop test runs google-auth-library (npm, pinned by
// testdata/gcp/package-lock.json) in separate Node processes configured
// only by `tokenagent env PROFILE --for gcp`: they find the agent's
// metadata server by GCE_METADATA_HOST and get the profile's token,
// which the agent fetched with a service-account key's JWT-bearer grant.
// It runs only when asked (TOKENAGENT_INTEROP=required, or -interop),
// after CI's npm ci in testdata/gcp.

const gcpHowTo = "run it with: (cd cmd/tokenagentd/testdata/gcp && npm ci) && TOKENAGENT_INTEROP=required go test -run GoogleAuth ./cmd/tokenagentd/ (or -interop)"

// gcpProcesses is how many separate Node processes ask at once.
const gcpProcesses = 20

// TestInteropGoogleAuthLibrary: docs/providers.md's Google SDKs block,
// `new GoogleAuth().getAccessToken()`, in gcpProcesses Node processes run
// by a user the profile's allow list names (when root: another uid), gets
// one token at the cost of one IdP request; a user the list does not name
// gets an error, not a token.
func TestInteropGoogleAuthLibrary(t *testing.T) {
	if !interopAsked() {
		t.Skip("interop tests with google-auth-library are off; " + gcpHowTo)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("interop tests asked for, but Node.js is not installed (install nodejs and npm)")
	}
	src, err := filepath.Abs("testdata/gcp")
	if err != nil {
		t.Fatal(err)
	}
	if !npmInstalled(src, "google-auth-library", "gcp-metadata") {
		t.Fatalf("the npm packages of %s are not installed; %s", src, gcpHowTo)
	}
	snippet := docSnippet(t, "../../docs/providers.md", "## Google SDKs", "```js\n")

	const email = "orders@tokenagent-interop.iam.gserviceaccount.com"
	const scope = "https://www.googleapis.com/auth/cloud-platform"
	idp := idptest.New()
	t.Cleanup(idp.Close)
	key := idp.AddServiceAccount(email, scope)

	var allowed, refused *user.User
	allowList := ""
	if os.Geteuid() == 0 {
		if allowed, err = user.Lookup("daemon"); err != nil {
			t.Fatalf("no user daemon to run the allowed processes as: %v", err)
		}
		if refused, err = user.Lookup("bin"); err != nil {
			t.Fatalf("no user bin to run the refused process as: %v", err)
		}
		allowList = fmt.Sprintf("allow_users = [%q]\n", allowed.Username)
	} else {
		t.Log("not root: the Node processes run as the agent's own user, and no other user is tried")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sa.json"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, filepath.Join(dir, "agent.toml"), `store = "memory"
log_level = "debug"

[profiles.gcp]
credentials = "file:sa.json"
scopes = ["`+scope+`"]
gcp_metadata = "127.0.0.1:0"
gcp_project = "tokenagent-interop"
`+allowList)
	d := startDaemon(t, filepath.Join(dir, "agent.toml"))

	out, err := exec.Command(buildCLI(t), "env", "gcp", "--for", "gcp", "--socket", d.socket).Output()
	if err != nil {
		t.Fatalf("tokenagent env gcp --for gcp: %v", err)
	}
	var env []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		kv, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		name, quoted, _ := strings.Cut(kv, "=")
		env = append(env, name+"="+strings.Trim(quoted, "'"))
	}
	if len(env) != 3 || !strings.HasPrefix(env[0], "GCE_METADATA_HOST=127.0.0.1:") {
		t.Fatalf("tokenagent env gcp --for gcp printed:\n%s\nwant GCE_METADATA_HOST, GCE_METADATA_IP and METADATA_SERVER_DETECTION", out)
	}

	// The packages and a home with no Google credentials of its own, where
	// the processes' user may read them (the checkout may be private).
	work, err := os.MkdirTemp(testDir, "gcp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if out, err := exec.Command("cp", "-a", src+"/.", work).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v %s", src, err, out)
	}
	if out, err := exec.Command("chmod", "-R", "a+rX", work).CombinedOutput(); err != nil {
		t.Fatalf("chmod %s: %v %s", work, err, out)
	}
	command := func(u *user.User) *exec.Cmd {
		cmd := exec.Command(node, "--input-type=module", "-e", snippet)
		cmd.Dir = work
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + work}, env...)
		runAsUser(cmd, u)
		return cmd
	}
	run := func(u *user.User) (string, string, error) {
		cmd := command(u)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), stderr.String(), err
	}

	tokens := concurrently(t, "Node (google-auth-library)", gcpProcesses, func(int) *exec.Cmd { return command(allowed) })
	for i := range gcpProcesses {
		if tokens[i] == "" || tokens[i] != tokens[0] {
			t.Fatalf("Node process %d of %d: %.300q; want the token process 0 got", i, gcpProcesses, tokens[i])
		}
	}
	if claims, err := idp.VerifyToken(tokens[0]); err != nil || claims["sub"] != email || claims["scope"] != scope {
		t.Errorf("the Node processes' token does not verify as %s's with scope %s: %v %v", email, scope, claims, err)
	}
	requests := idp.Requests(email)
	if requests != 1 {
		t.Errorf("%d Node processes through the agent cost the IdP %d token requests, want 1", gcpProcesses, requests)
	}
	if form := idp.LastForm(email); form.Get("grant_type") != idptest.GrantJWTBearer {
		t.Errorf("the agent's request to the IdP = %v, want the jwt-bearer grant", form)
	}
	t.Logf("%d Node processes (google-auth-library, %s): %d tokens, all the same, %d IdP token request(s)", gcpProcesses, env[0], gcpProcesses, requests)

	if refused == nil {
		return
	}
	tok, stderr, err := run(refused)
	if err == nil || tok != "" || !strings.Contains(stderr, "403") {
		t.Errorf("a Node process of uid %s, which the allow list does not name: %v, stdout %.100q, stderr %.500s; want an error (403), not a token", refused.Uid, err, tok, stderr)
	}
	if got := idp.Requests(email); got != 1 {
		t.Errorf("IdP token requests after the refused process = %d, want still 1", got)
	}
}
