package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

// The Azure interop tests run the Azure SDKs' own credentials — pinned
// @azure/identity (npm, testdata/azure) and Debian's azure-identity for
// Python (python3-azure) — as separate processes configured by nothing
// but what `tokenagent env PROFILE --for azure` prints, against the
// agent's azure_identity_endpoint. Like the rest of the interop suite
// they run only when asked, and then fail rather than skip on what is
// missing.

const azureHowTo = "run them with: (cd cmd/tokenagentd/testdata/azure && npm ci) && apt-get install python3-azure && TOKENAGENT_INTEROP=required go test -run Azure ./cmd/tokenagentd/ (or -interop)"

// azureProcesses is how many separate processes each credential runs.
const azureProcesses = 20

// azureScope is what the processes ask for: Azure Resource Manager, the
// profile's Entra scope.
const azureScope = "https://management.azure.com/.default"

// azureAgent is a running agent with one profile for azureScope, and the
// users to run the SDKs as.
type azureAgent struct {
	idp     *idptest.Server
	d       *agentProc
	cli     string
	allowed *user.User // nil: the agent's own user
	refused *user.User // nil when not root
}

const azureIdPClient = "orders-service"

// startAzureAgent starts the daemon with azure_identity_endpoint and a
// profile "arm" for azureScope, which (when root) only the user daemon
// may use; its socket lets every user in, so that each asks for its
// own environment.
func startAzureAgent(t *testing.T) *azureAgent {
	t.Helper()
	a := &azureAgent{idp: idptest.New(), cli: buildCLI(t)}
	t.Cleanup(a.idp.Close)
	const idpSecret = "idp-secret-never-leaves-the-agent"
	a.idp.AddClient(idptest.Client{ID: azureIdPClient, Secret: idpSecret, Method: "client_secret_basic"})
	allowList := ""
	if os.Geteuid() == 0 {
		var err error
		if a.allowed, err = user.Lookup("daemon"); err != nil {
			t.Fatalf("no user daemon to run the SDKs as: %v", err)
		}
		if a.refused, err = user.Lookup("bin"); err != nil {
			t.Fatalf("no user bin to run the refused SDK as: %v", err)
		}
		allowList = fmt.Sprintf("allow_users = [%q]\n", a.allowed.Username)
	} else {
		t.Log("not root: the SDKs run as the agent's own user, and no other user is tried")
	}
	dir, err := os.MkdirTemp(testDir, "azure-") // the socket's directory: other users traverse it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	config := filepath.Join(dir, "agent.toml")
	writeConfig(t, config, fmt.Sprintf(`store = "memory"
socket_mode = "0666"
azure_identity_endpoint = "127.0.0.1:0"
log_level = "debug"

[profiles.arm]
token_url = %q
client_id = %q
client_secret = %q
scopes = [%q]
%s`, a.idp.TokenURL, azureIdPClient, idpSecret, azureScope, allowList))
	a.d = startDaemon(t, config)
	return a
}

// runAsUser sets the command to run as u (nil: this process's user).
func runAsUser(cmd *exec.Cmd, u *user.User) {
	if u == nil {
		return
	}
	id, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(id), Gid: uint32(gid), Groups: []uint32{}}}
}

// env is what `tokenagent env arm --for azure` prints for u, as an
// environment (beside PATH and HOME alone), with its output.
func (a *azureAgent) env(t *testing.T, u *user.User) ([]string, string, error) {
	t.Helper()
	cmd := exec.Command(a.cli, "env", "arm", "--for", "azure", "--socket", a.d.socket)
	runAsUser(cmd, u)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, stderr.String(), err
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + testDir}
	if p := os.Getenv("PYTHONPATH"); p != "" { // where a python3-azure not installed by apt is
		env = append(env, "PYTHONPATH="+p)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			name, quoted, _ := strings.Cut(kv, "=")
			env = append(env, name+"="+strings.Trim(quoted, "'"))
		}
	}
	return env, string(out), nil
}

func userName(u *user.User) string {
	if u == nil {
		return "this user"
	}
	return u.Username
}

// imdsOnly is env without App Service's variables: the SDKs then speak
// IMDS to AZURE_POD_IDENTITY_AUTHORITY_HOST.
func imdsOnly(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "IDENTITY_") {
			out = append(out, kv)
		}
	}
	return out
}

// sdkAnswer is one process's JSON line: a token or an error.
type sdkAnswer struct {
	Token string `json:"token"`
	Error string `json:"error"`
}

// runAll runs n copies of argv at once as u with env, each printing one
// sdkAnswer line, and returns them.
func runAll(t *testing.T, n int, u *user.User, env []string, argv ...string) []sdkAnswer {
	t.Helper()
	start := time.Now()
	defer func() {
		t.Logf("%d × %s %s as %v: %v", n, filepath.Base(argv[0]), argv[len(argv)-2], userName(u), time.Since(start).Round(time.Millisecond))
	}()
	outs := concurrently(t, strings.Join(argv, " "), n, func(int) *exec.Cmd {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = testDir
		cmd.Env = env
		runAsUser(cmd, u)
		return cmd
	})
	answers := make([]sdkAnswer, n)
	for i, out := range outs {
		lines := strings.Split(out, "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &answers[i]); err != nil {
			t.Fatalf("%s, process %d of %d: %v: stdout %q", strings.Join(argv, " "), i, n, err, out)
		}
	}
	return answers
}

// sameToken fails unless every answer is the one IdP token.
func (a *azureAgent) sameToken(t *testing.T, what string, answers []sdkAnswer) string {
	t.Helper()
	for i, ans := range answers {
		if ans.Token == "" || ans.Token != answers[0].Token {
			t.Fatalf("%s, process %d of %d: %+v; want the token process 0 got", what, i, len(answers), ans)
		}
	}
	if claims, err := a.idp.VerifyToken(answers[0].Token); err != nil || claims["client_id"] != azureIdPClient {
		t.Fatalf("%s: the token does not verify as %s's: %v %v", what, azureIdPClient, claims, err)
	}
	return answers[0].Token
}

// refusedGetsNoToken: a user the profile does not list is told nothing
// by env, and even with the allowed user's environment (the header
// secret included) its SDK gets an error, not a token.
func (a *azureAgent) refusedGetsNoToken(t *testing.T, what string, env []string, argv ...string) {
	t.Helper()
	if a.refused == nil {
		return
	}
	if _, out, err := a.env(t, a.refused); err == nil {
		t.Errorf("tokenagent env arm --for azure as %s printed %q; want an error", a.refused.Username, out)
	}
	for _, ans := range runAll(t, 1, a.refused, env, argv...) {
		if ans.Token != "" || ans.Error == "" {
			t.Errorf("%s as %s (uid %s, not listed): %+v; want an error and no token", what, a.refused.Username, a.refused.Uid, ans)
		} else {
			t.Logf("%s as %s: %.300s", what, a.refused.Username, ans.Error)
		}
	}
}

// TestInteropAzureIdentityNode: @azure/identity's
// ManagedIdentityCredential and DefaultAzureCredential, 20 processes
// each, configured only by env --for azure (the App Service protocol),
// and 5 more speaking IMDS (AZURE_POD_IDENTITY_AUTHORITY_HOST alone), all
// get the same token for one IdP request; an unlisted user gets errors.
func TestInteropAzureIdentityNode(t *testing.T) {
	if !interopAsked() {
		t.Skip("interop tests are off; " + azureHowTo)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("no node; " + azureHowTo)
	}
	dir, err := filepath.Abs("testdata/azure")
	if err != nil {
		t.Fatal(err)
	}
	if !npmInstalled(dir, "@azure/identity") {
		t.Fatalf("@azure/identity is not installed in %s; %s", dir, azureHowTo)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "node_modules/@azure/identity/package.json")); err == nil {
		var pkg struct{ Version string }
		json.Unmarshal(data, &pkg)
		t.Logf("library: @azure/identity %s", pkg.Version)
	}
	a := startAzureAgent(t)
	env, out, err := a.env(t, a.allowed)
	if err != nil {
		t.Fatalf("tokenagent env arm --for azure: %v %s", err, out)
	}
	script := filepath.Join(dir, "token.mjs")
	managed := a.sameToken(t, "ManagedIdentityCredential", runAll(t, azureProcesses, a.allowed, env, node, script, "managed", azureScope))
	deflt := a.sameToken(t, "DefaultAzureCredential", runAll(t, azureProcesses, a.allowed, env, node, script, "default", azureScope))
	imds := a.sameToken(t, "ManagedIdentityCredential over IMDS", runAll(t, 5, a.allowed, imdsOnly(env), node, script, "managed", azureScope))
	if managed != deflt || managed != imds {
		t.Error("the credentials got different tokens; want the agent's one")
	}
	if n := a.idp.Requests(azureIdPClient); n != 1 {
		t.Errorf("IdP requests for %d processes = %d, want 1", 2*azureProcesses+5, n)
	}
	a.refusedGetsNoToken(t, "ManagedIdentityCredential", env, node, script, "managed", azureScope)
	a.refusedGetsNoToken(t, "DefaultAzureCredential", env, node, script, "default", azureScope)
}

// azurePython is one Python process: a credential of Debian's
// azure-identity with no arguments asks for azureScope.
const azurePython = `import json, sys
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
credential = DefaultAzureCredential() if sys.argv[1] == "default" else ManagedIdentityCredential()
try:
    print(json.dumps({"token": credential.get_token(sys.argv[2]).token}))
except Exception as e:
    print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
`

// TestInteropAzureIdentityPython: Debian's azure-identity for Python
// (python3-azure), ManagedIdentityCredential and DefaultAzureCredential,
// 20 processes each, configured only by env --for azure, and 5 more
// speaking IMDS: one token, one IdP request; an unlisted user gets errors.
func TestInteropAzureIdentityPython(t *testing.T) {
	if !interopAsked() {
		t.Skip("interop tests are off; " + azureHowTo)
	}
	python := "/usr/bin/python3" // Debian's, where python3-azure installs the library
	a := startAzureAgent(t)
	env, out, err := a.env(t, a.allowed)
	if err != nil {
		t.Fatalf("tokenagent env arm --for azure: %v %s", err, out)
	}
	check := exec.Command(python, "-c", "import azure.identity; print(azure.identity.__version__)")
	check.Env = env
	version, err := check.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 has no azure.identity (%s); %s", strings.TrimSpace(string(version)), azureHowTo)
	}
	t.Logf("library: azure-identity %s (Debian python3-azure)", strings.TrimSpace(string(version)))
	managed := a.sameToken(t, "ManagedIdentityCredential", runAll(t, azureProcesses, a.allowed, env, python, "-c", azurePython, "managed", azureScope))
	deflt := a.sameToken(t, "DefaultAzureCredential", runAll(t, azureProcesses, a.allowed, env, python, "-c", azurePython, "default", azureScope))
	imds := a.sameToken(t, "ManagedIdentityCredential over IMDS", runAll(t, 5, a.allowed, imdsOnly(env), python, "-c", azurePython, "managed", azureScope))
	if managed != deflt || managed != imds {
		t.Error("the credentials got different tokens; want the agent's one")
	}
	if n := a.idp.Requests(azureIdPClient); n != 1 {
		t.Errorf("IdP requests for %d processes = %d, want 1", 2*azureProcesses+5, n)
	}
	a.refusedGetsNoToken(t, "ManagedIdentityCredential", env, python, "-c", azurePython, "managed", azureScope)
	a.refusedGetsNoToken(t, "DefaultAzureCredential", env, python, "-c", azurePython, "default", azureScope)
}
