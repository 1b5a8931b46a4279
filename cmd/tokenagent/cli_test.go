package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
	"golang.org/x/oauth2/clientcredentials"
)

var update = flag.Bool("update", false, "rewrite golden files")

// One real agent for the CLI tests: idptest, the engine and the socket
// server on a temporary socket that TOKENAGENT_SOCKET points at.
var (
	cliIdP    *idptest.Server
	cliSocket string
	cliDir    string // world-traversable: the socket and the built binary
	cliBinary string
)

func TestMain(m *testing.M) {
	// As a child (see startFakeAgent), be another user's fake agent.
	if sock := os.Getenv("TOKENAGENT_FAKE_AGENT"); sock != "" {
		serveFakeAgent(sock)
		return
	}
	// As a child (see runCLIAs), be the CLI.
	if args := os.Getenv("TOKENAGENT_CLI_ARGS"); args != "" {
		code := exitCode(run(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr), os.Stderr)
		os.Exit(code)
	}
	code, err := withAgent(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cmd tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func withAgent(m *testing.M) (int, error) {
	running, err := agenttest.Start(`socket_mode = "0666"
token_endpoint = "127.0.0.1:0"
[profiles.demo]
token_url = "IDP"
client_id = "c"
client_secret = "cli-secret"
scopes = ["read"]

[profiles.opaque]
token_url = "IDP"
client_id = "c"
client_secret = "cli-secret"
scopes = ["opaque"]

[profiles.broken]
token_url = "IDP"
client_id = "c"
client_secret = "not-the-secret"
`)
	if err != nil {
		return 0, err
	}
	defer running.Close()
	cliIdP, cliDir, cliSocket = running.IdP, running.Dir, running.Socket
	cliIdP.AddClient(idptest.Client{ID: "c", Secret: "cli-secret", Method: "client_secret_basic"})
	os.Setenv(ipc.EnvSocket, cliSocket)
	return m.Run(), nil
}

// cli runs the command in-process and returns stdout, stderr and the exit code.
func cli(args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	code := exitCode(run(context.Background(), args, &stdout, &stderr), &stderr)
	return stdout.String(), stderr.String(), code
}

var (
	jwtPattern  = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)
	timePattern = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	inPattern   = regexp.MustCompile(`"expires_in": \d+`)
	idpPattern  = regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
)

// normalize replaces what changes per run: tokens, times, paths, ports.
func normalize(s string) string {
	s = jwtPattern.ReplaceAllString(s, "<TOKEN>")
	s = timePattern.ReplaceAllString(s, "<TIME>")
	s = inPattern.ReplaceAllString(s, `"expires_in": <SECONDS>`)
	s = idpPattern.ReplaceAllString(s, "<IDP>")
	return strings.ReplaceAll(s, cliDir, "<DIR>")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestTokenFormatsGolden(t *testing.T) {
	for _, format := range []string{"plain", "json", "header", "env", "curl"} {
		t.Run(format, func(t *testing.T) {
			stdout, stderr, code := cli("token", "demo", "--format", format)
			if code != 0 || stderr != "" {
				t.Fatalf("token --format %s: exit %d, stderr %q", format, code, stderr)
			}
			if !jwtPattern.MatchString(stdout) {
				t.Fatalf("output holds no token: %q", stdout)
			}
			golden(t, "token_"+format, normalize(stdout))
		})
	}
	stdout, _, _ := cli("token", "--env", "ZEEBE_TOKEN", "demo", "--format", "env")
	if !strings.HasPrefix(stdout, "export ZEEBE_TOKEN='eyJ") {
		t.Errorf("--env ZEEBE_TOKEN: %q", stdout)
	}
}

func TestExitCodesGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"agent_down", []string{"token", "demo", "--socket", filepath.Join(cliDir, "nothing.sock")}, exitUnreachable},
		{"unknown_profile", []string{"token", "nope"}, exitDenied},
		{"idp_error", []string{"token", "broken"}, exitIdP},
		{"usage_format", []string{"token", "demo", "--format", "yaml"}, exitUsage},
		{"usage_no_profile", []string{"token"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := cli(tt.args...)
			if code != tt.code || stdout != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing on stdout", code, stdout, tt.code)
			}
			golden(t, "exit_"+tt.name, fmt.Sprintf("exit %d\n%s", code, normalize(stderr)))
		})
	}
	t.Run("forbidden", func(t *testing.T) {
		code, stdout, stderr := runCLIAs(t, 65534, "token", "demo")
		if code != exitDenied || stdout != "" {
			t.Errorf("exit %d, stdout %q; want %d and nothing on stdout", code, stdout, exitDenied)
		}
		golden(t, "exit_forbidden", fmt.Sprintf("exit %d\n%s", code, normalize(stderr)))
	})
}

// runCLIAs runs this test binary as the CLI under another uid.
func runCLIAs(t *testing.T, uid uint32, args ...string) (int, string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run as another user")
	}
	self, _ := os.Executable()
	data, _ := os.ReadFile(self)
	bin := filepath.Join(cliDir, "cli-child.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"TOKENAGENT_CLI_ARGS=" + strings.Join(args, "\x1f"), ipc.EnvSocket + "=" + cliSocket, "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), withoutCoverageWarning(stderr.String())
}

// withoutCoverageWarning drops the line a binary built with -cover writes
// to stderr when it has nowhere to put its counters: the child run under
// another uid is this test binary.
func withoutCoverageWarning(s string) string {
	var keep []string
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(line, "warning: GOCOVERDIR not set") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

func TestStatusInspectRefresh(t *testing.T) {
	if _, _, code := cli("token", "demo"); code != 0 {
		t.Fatal("token demo failed")
	}
	stdout, _, code := cli("status")
	if code != 0 || !strings.Contains(stdout, "PROFILE") || !regexp.MustCompile(`(?m)^demo\s+(\d+h)?\d+m\d+s\s+\d{4}-`).MatchString(stdout) {
		t.Errorf("status: exit %d\n%s", code, stdout)
	}
	stdout, _, code = cli("status", "--json")
	if code != 0 || !strings.Contains(stdout, `"name": "demo"`) {
		t.Errorf("status --json: exit %d\n%s", code, stdout)
	}
	stdout, _, code = cli("inspect", "demo")
	for _, want := range []string{"JWT (signature not checked)", `"alg": "RS256"`, `"client_id": "c"`, `"scope": "read"`, "exp: "} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("inspect demo lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`exp: \S+ \(in (59m\d+s|1h0m0s)\)`).MatchString(stdout) {
		t.Errorf("inspect does not show exp as local time and time left:\n%s", stdout)
	}
	before := cliIdP.Requests("c")
	stdout, _, code = cli("refresh", "demo")
	if code != 0 || !strings.Contains(stdout, "demo: new token, valid until") || cliIdP.Requests("c") != before+1 {
		t.Errorf("refresh: exit %d, %q, IdP requests %d → %d", code, stdout, before, cliIdP.Requests("c"))
	}
}

func TestInspectOpaque(t *testing.T) {
	cliIdP.SetFault(idptest.Fault{Opaque: true})
	defer cliIdP.ClearFault()
	stdout, _, code := cli("inspect", "opaque")
	if code != 0 || !strings.Contains(stdout, "opaque token (not a JWT)") {
		t.Errorf("inspect of an opaque token: exit %d\n%s", code, stdout)
	}
}

// buildBinary builds the real tokenagent once, for tests that need a
// separate process (exec, signals).
func buildBinary(t *testing.T) string {
	t.Helper()
	if cliBinary != "" {
		return cliBinary
	}
	bin := filepath.Join(cliDir, "tokenagent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cliBinary = bin
	return bin
}

func TestExec(t *testing.T) {
	bin := buildBinary(t)
	t.Run("token in environment, exit code passed through", func(t *testing.T) {
		cmd := exec.Command(bin, "exec", "demo", "--env", "MY_TOKEN", "--", "sh", "-c", `case "$MY_TOKEN" in eyJ*) exit 7;; *) exit 1;; esac`)
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
			t.Errorf("exec exit = %v, want 7 from the command", err)
		}
	})
	t.Run("SIGTERM forwarded", func(t *testing.T) {
		cmd := exec.Command(bin, "exec", "demo", "--", "sh", "-c", `trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() || sc.Text() != "ready" {
			t.Fatalf("command did not start: %q", sc.Text())
		}
		cmd.Process.Signal(syscall.SIGTERM)
		var rest []string
		for sc.Scan() {
			rest = append(rest, sc.Text())
		}
		err := cmd.Wait()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 42 || strings.Join(rest, "\n") != "got-term" {
			t.Errorf("after SIGTERM: %v, output %q; want exit 42 and got-term", err, rest)
		}
	})
	t.Run("killed by a signal", func(t *testing.T) {
		out, err := exec.Command(bin, "exec", "demo", "--", "sh", "-c", "kill -KILL $$").CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 128+9 {
			t.Errorf("exec of a command killed by SIGKILL = %v (%s), want exit 137", err, out)
		}
	})
	t.Run("--for zeebe: the client's environment instead of a token", func(t *testing.T) {
		out, err := exec.Command(bin, "exec", "demo", "--for", "zeebe", "--", "sh", "-c", `echo "$ZEEBE_CLIENT_ID $ZEEBE_AUTHORIZATION_SERVER_URL ${ACCESS_TOKEN:-none}"`).Output()
		if err != nil || !regexp.MustCompile(`^demo http://127\.0\.0\.1:\d+/oauth2/token none\n$`).Match(out) {
			t.Errorf("exec --for zeebe: %v, %q", err, out)
		}
	})
	t.Run("agent down", func(t *testing.T) {
		cmd := exec.Command(bin, "exec", "demo", "--socket", filepath.Join(cliDir, "none.sock"), "--", "true")
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUnreachable {
			t.Errorf("exec with the agent down = %v, want exit %d", err, exitUnreachable)
		}
	})
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrWant string
	}{
		{"no command", nil, exitUsage, "", "no command"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"daemon command", []string{"run"}, exitUsage, "", "use `tokenagentd run`"},
		{"daemon check-config", []string{"check-config", "x.toml"}, exitUsage, "", "use `tokenagentd check-config`"},
		{"version", []string{"version"}, exitOK, "tokenagent ", ""},
		{"--version", []string{"--version"}, exitOK, "tokenagent ", ""},
		{"help", []string{"help"}, exitOK, "usage: tokenagent", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := cli(tt.args...)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.stdout)
			}
			if !strings.Contains(stderr, tt.stderrWant) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.stderrWant)
			}
		})
	}
}

// TestThinCLI keeps the CLI thin: it links clientlib and the ipc wire
// package, never the daemon's packages or their dependencies, and not
// net/http either — every CLI start pays for what the binary links
// (docs/benchmarks.md, "Cold CLI process").
func TestThinCLI(t *testing.T) {
	deps := goListDeps(t, ".")
	if !slices.Contains(deps, "github.com/tokenagent/tokenagent/clientlib") {
		t.Fatalf("go list -deps does not list clientlib; the check below would mean nothing:\n%s", strings.Join(deps, "\n"))
	}
	forbidden := []string{
		"go.etcd.io/bbolt", "github.com/rs/zerolog", "github.com/kardianos/service", "github.com/BurntSushi/toml",
		"github.com/golang-jwt/jwt", "net/http", "net/http/httptest", "golang.org/x/oauth2",
		"github.com/tokenagent/tokenagent/agent", "github.com/tokenagent/tokenagent/store",
		"github.com/tokenagent/tokenagent/ipc/localapi",
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("cmd/tokenagent links %s", dep)
			}
		}
	}
}

// goListDeps lists the packages pkg links, as `go list -deps` does.
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestEnvPointsAClientAtTheAgent: the environment `tokenagent env` prints
// is enough for an unmodified OAuth client (x/oauth2 clientcredentials,
// configured only from it) to get the agent's token.
func TestEnvPointsAClientAtTheAgent(t *testing.T) {
	stdout, stderr, code := cli("env", "demo", "--for", "oauth")
	if code != 0 {
		t.Fatalf("env: exit %d, %s", code, stderr)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		kv, ok := strings.CutPrefix(line, "export ")
		name, quoted, ok2 := strings.Cut(kv, "=")
		value, ok3 := shellUnquote(quoted)
		if !ok || !ok2 || !ok3 {
			t.Fatalf("not an export line: %q", line)
		}
		env[name] = value
	}
	if env["CLIENT_ID"] != "demo" || !strings.HasSuffix(env["TOKEN_URL"], "/oauth2/token") || env["SCOPE"] != "read" {
		t.Fatalf("env = %v", env)
	}
	cfg := clientcredentials.Config{ClientID: env["CLIENT_ID"], ClientSecret: env["CLIENT_SECRET"], TokenURL: env["TOKEN_URL"], Scopes: strings.Fields(env["SCOPE"])}
	tok, err := cfg.Token(context.Background())
	if err != nil {
		t.Fatalf("x/oauth2 with the printed environment: %v", err)
	}
	viaCLI, _, _ := cli("token", "demo")
	if tok.AccessToken+"\n" != viaCLI {
		t.Error("the token endpoint and the socket served different tokens for the same profile")
	}
	zeebe, _, code := cli("env", "demo", "--for", "zeebe")
	if code != 0 || !strings.Contains(zeebe, "export ZEEBE_AUTHORIZATION_SERVER_URL='http://127.0.0.1:") || !strings.Contains(zeebe, "export ZEEBE_CLIENT_ID='demo'") {
		t.Errorf("env --for zeebe:\n%s", zeebe)
	}
	camunda, _, code := cli("env", "demo", "--for", "camunda")
	if code != 0 || !strings.Contains(camunda, "export CAMUNDA_OAUTH_URL='http://127.0.0.1:") || !strings.Contains(camunda, "export CAMUNDA_AUTH_STRATEGY='OAUTH'") || !strings.Contains(camunda, "export ZEEBE_CLIENT_ID='demo'") {
		t.Errorf("env --for camunda:\n%s", camunda)
	}
	if _, stderr, code := cli("env", "nope", "--for", "zeebe"); code != exitDenied {
		t.Errorf("env for an unknown profile: exit %d %s, want %d", code, stderr, exitDenied)
	}
	if _, _, code := cli("env", "demo", "--for", "spring"); code != exitUsage {
		t.Errorf("env --for spring: exit %d, want %d", code, exitUsage)
	}
}
