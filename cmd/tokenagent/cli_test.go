package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
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
func runCLI(args ...string) (string, string, int) {
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
			stdout, stderr, code := runCLI("token", "demo", "--format", format)
			if code != 0 || stderr != "" {
				t.Fatalf("token --format %s: exit %d, stderr %q", format, code, stderr)
			}
			if !jwtPattern.MatchString(stdout) {
				t.Fatalf("output holds no token: %q", stdout)
			}
			golden(t, "token_"+format, normalize(stdout))
		})
	}
	stdout, _, _ := runCLI("token", "--env", "ZEEBE_TOKEN", "demo", "--format", "env")
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
		{"agent_down", []string{"token", "demo", "--socket", filepath.Join(cliDir, "nothing.sock")}, cli.ExitUnreachable},
		{"unknown_profile", []string{"token", "nope"}, cli.ExitDenied},
		{"idp_error", []string{"token", "broken"}, cli.ExitIdP},
		{"usage_format", []string{"token", "demo", "--format", "yaml"}, cli.ExitUsage},
		{"usage_no_profile", []string{"token"}, cli.ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(tt.args...)
			if code != tt.code || stdout != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing on stdout", code, stdout, tt.code)
			}
			golden(t, "exit_"+tt.name, fmt.Sprintf("exit %d\n%s", code, normalize(stderr)))
		})
	}
	t.Run("forbidden", func(t *testing.T) {
		code, stdout, stderr := runCLIAs(t, 65534, "token", "demo")
		if code != cli.ExitDenied || stdout != "" {
			t.Errorf("exit %d, stdout %q; want %d and nothing on stdout", code, stdout, cli.ExitDenied)
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
	if _, _, code := runCLI("token", "demo"); code != 0 {
		t.Fatal("token demo failed")
	}
	runCLI("token", "broken") // the IdP refuses it: it cannot serve
	// status shows every profile, and exits 5 because one cannot serve.
	stdout, _, code := runCLI("status")
	if code != cli.ExitIdP || !strings.Contains(stdout, "PROFILE") || !regexp.MustCompile(`(?m)^demo\s+(\d+h)?\d+m\d+s\s+\d{4}-`).MatchString(stdout) ||
		!regexp.MustCompile(`(?m)^broken\s+no token .*invalid_client`).MatchString(stdout) {
		t.Errorf("status: exit %d (want %d: broken cannot serve)\n%s", code, cli.ExitIdP, stdout)
	}
	if !regexp.MustCompile(`(?m)^AGENT \S.*, up \d`).MatchString(stdout) {
		t.Errorf("status does not say which agent answers, since when:\n%s", stdout)
	}
	stdout, _, code = runCLI("status", "--json")
	if code != cli.ExitIdP || !strings.Contains(stdout, `"name": "demo"`) {
		t.Errorf("status --json: exit %d\n%s", code, stdout)
	}
	stdout, _, code = runCLI("inspect", "demo")
	for _, want := range []string{"JWT (signature not checked)", `"alg": "RS256"`, `"client_id": "c"`, `"scope": "read"`, "exp: "} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("inspect demo lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`exp: \S+ \(in (59m\d+s|1h0m0s)\)`).MatchString(stdout) {
		t.Errorf("inspect does not show exp as local time and time left:\n%s", stdout)
	}
	before := cliIdP.Requests("c")
	stdout, _, code = runCLI("refresh", "demo")
	if code != 0 || !strings.Contains(stdout, "demo: new token, valid until") || cliIdP.Requests("c") != before+1 {
		t.Errorf("refresh: exit %d, %q, IdP requests %d → %d", code, stdout, before, cliIdP.Requests("c"))
	}
}

func TestInspectOpaque(t *testing.T) {
	cliIdP.SetFault(idptest.Fault{Opaque: true})
	defer cliIdP.ClearFault()
	stdout, _, code := runCLI("inspect", "opaque")
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
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != cli.ExitUnreachable {
			t.Errorf("exec with the agent down = %v, want exit %d", err, cli.ExitUnreachable)
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
		{"no command", nil, cli.ExitUsage, "", "no command"},
		{"unknown command", []string{"frobnicate"}, cli.ExitUsage, "", `unknown command "frobnicate"`},
		{"daemon command", []string{"run"}, cli.ExitUsage, "", "use `tokenagentd run`"},
		{"daemon check-config", []string{"check-config", "x.toml"}, cli.ExitUsage, "", "use `tokenagentd check-config`"},
		{"version", []string{"version"}, cli.ExitOK, "tokenagent ", ""},
		{"--version", []string{"--version"}, cli.ExitOK, "tokenagent ", ""},
		{"help", []string{"help"}, cli.ExitOK, "usage: tokenagent", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(tt.args...)
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
	stdout, stderr, code := runCLI("env", "demo", "--for", "oauth")
	if code != 0 {
		t.Fatalf("env: exit %d, %s", code, stderr)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if strings.HasPrefix(line, "# ") {
			continue
		}
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
	if env["OAUTHLIB_INSECURE_TRANSPORT"] != "1" {
		t.Errorf("env --for oauth on the plain endpoint: OAUTHLIB_INSECURE_TRANSPORT = %q, want 1 (requests-oauthlib refuses http:// without it)", env["OAUTHLIB_INSECURE_TRANSPORT"])
	}
	cfg := clientcredentials.Config{ClientID: env["CLIENT_ID"], ClientSecret: env["CLIENT_SECRET"], TokenURL: env["TOKEN_URL"], Scopes: strings.Fields(env["SCOPE"])}
	tok, err := cfg.Token(context.Background())
	if err != nil {
		t.Fatalf("x/oauth2 with the printed environment: %v", err)
	}
	viaCLI, _, _ := runCLI("token", "demo")
	if tok.AccessToken+"\n" != viaCLI {
		t.Error("the token endpoint and the socket served different tokens for the same profile")
	}
	zeebe, _, code := runCLI("env", "demo", "--for", "zeebe")
	if code != 0 || !strings.Contains(zeebe, "export ZEEBE_AUTHORIZATION_SERVER_URL='http://127.0.0.1:") || !strings.Contains(zeebe, "export ZEEBE_CLIENT_ID='demo'") || strings.Contains(zeebe, "OAUTHLIB") {
		t.Errorf("env --for zeebe:\n%s", zeebe)
	}
	camunda, _, code := runCLI("env", "demo", "--for", "camunda")
	if code != 0 || !strings.Contains(camunda, "export CAMUNDA_OAUTH_URL='http://127.0.0.1:") || !strings.Contains(camunda, "export CAMUNDA_AUTH_STRATEGY='OAUTH'") || !strings.Contains(camunda, "export ZEEBE_CLIENT_ID='demo'") {
		t.Errorf("env --for camunda:\n%s", camunda)
	}
	if _, stderr, code := runCLI("env", "nope", "--for", "zeebe"); code != cli.ExitDenied {
		t.Errorf("env for an unknown profile: exit %d %s, want %d", code, stderr, cli.ExitDenied)
	}
	if _, _, code := runCLI("env", "demo", "--for", "spring"); code != cli.ExitUsage {
		t.Errorf("env --for spring: exit %d, want %d", code, cli.ExitUsage)
	}
}

// TestPermissionDeniedIsNotAgentDown: a user outside the socket's group
// is told that (exit 4, with the socket's mode and group and what to do),
// not that the agent is not running.
func TestPermissionDeniedIsNotAgentDown(t *testing.T) {
	running, err := agenttest.Start("socket_mode = \"0660\"\n[profiles.demo]\ntoken_url = \"IDP\"\nclient_id = \"c\"\nclient_secret = \"cli-secret\"\n")
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	os.Chmod(filepath.Dir(running.Socket), 0o755)                                       // others may reach the socket; its mode decides
	code, stdout, stderr := runCLIAs(t, 2, "token", "demo", "--socket", running.Socket) // the real user bin
	if code != cli.ExitDenied || stdout != "" {
		t.Errorf("exit %d, stdout %q; want %d", code, stdout, cli.ExitDenied)
	}
	fi, err := os.Stat(running.Socket)
	if err != nil {
		t.Fatal(err)
	}
	group, err := user.LookupGroupId(strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"permission denied on " + running.Socket, "mode 0660", "group " + group.Name, "socket_mode"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "start it") {
		t.Errorf("told to start an agent that is running:\n%s", stderr)
	}
}

// TestHelp: every command's --help (and -h) is on stdout with exit 0 and
// names its arguments, its flags in --flag form, an example and the exit
// codes; a wrong flag is a usage error (exit 2) that points at the help.
func TestHelp(t *testing.T) {
	for _, cmd := range []string{"token", "exec", "env", "refresh", "status", "health", "inspect"} {
		for _, flag := range []string{"--help", "-h"} {
			stdout, stderr, code := runCLI(cmd, flag)
			if code != 0 || stderr != "" {
				t.Errorf("%s %s: exit %d, stderr %q; want help on stdout, exit 0", cmd, flag, code, stderr)
			}
			for _, want := range []string{"usage: tokenagent " + cmd, "--socket PATH", "example:\n  ", "exit codes:"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("%s %s lacks %q:\n%s", cmd, flag, want, stdout)
				}
			}
			if regexp.MustCompile(`\n  -[^-]`).MatchString(stdout) {
				t.Errorf("%s %s shows a flag in -flag form:\n%s", cmd, flag, stdout)
			}
		}
		golden(t, "help_"+cmd, func() string { s, _, _ := runCLI(cmd, "--help"); return s }())
	}
	_, stderr, code := runCLI("token", "demo", "--bogus")
	if code != cli.ExitUsage || !strings.Contains(stderr, "tokenagent token --help") || strings.Count(stderr, "bogus") != 1 {
		t.Errorf("a wrong flag: exit %d, stderr %q; want %d, said once, pointing at the help", code, stderr, cli.ExitUsage)
	}
	if stdout, _, code := runCLI("--version"); code != 0 || !strings.HasPrefix(stdout, "tokenagent ") {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
}

// TestExecExitCodes: as a shell says it, 127 for a command that is not
// there, 126 for one that cannot be run.
func TestExecExitCodes(t *testing.T) {
	if _, stderr, code := runCLI("exec", "demo", "--", filepath.Join(cliDir, "no-such-program")); code != 127 || !strings.Contains(stderr, "no-such-program") {
		t.Errorf("exec of a missing command: exit %d, %q; want 127 naming it", code, stderr)
	}
	notExec := filepath.Join(t.TempDir(), "script")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	if _, stderr, code := runCLI("exec", "demo", "--", notExec); code != 126 {
		t.Errorf("exec of a file that is not executable: exit %d, %q; want 126", code, stderr)
	}
}

// TestMinValidReadAlike: --min-valid and the socket's min_valid take the
// same forms ("60" is 60s) and refuse the same values with the same words.
func TestMinValidReadAlike(t *testing.T) {
	a, _, c1 := runCLI("token", "demo", "--min-valid", "60")
	b, _, c2 := runCLI("token", "demo", "--min-valid", "60s")
	if c1 != 0 || c2 != 0 || a != b {
		t.Errorf("--min-valid 60 and 60s: exits %d, %d; same token %v", c1, c2, a == b)
	}
	// A min_valid the IdP's tokens cannot meet (they live an hour) is exit 5.
	if _, stderr, code := runCLI("token", "demo", "--min-valid", "2h"); code != cli.ExitIdP || !strings.Contains(stderr, "asked for 2h0m0s") {
		t.Errorf("--min-valid 2h with 1-hour tokens: exit %d, %q; want %d", code, stderr, cli.ExitIdP)
	}
	for _, bad := range []string{"-5s", "soon", "25h"} {
		_, stderr, code := runCLI("token", "demo", "--min-valid", bad)
		_, wantMsg := ipc.ParseMinValid(bad)
		if code != cli.ExitUsage || wantMsg == nil || !strings.Contains(stderr, wantMsg.Error()) {
			t.Errorf("--min-valid %s: exit %d, %q; want %d saying %v", bad, code, stderr, cli.ExitUsage, wantMsg)
		}
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", cliSocket)
		}}}
		resp, err := hc.Get("http://" + ipc.Host + "/v1/tokens/demo?min_valid=" + url.QueryEscape(bad))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), strings.ReplaceAll(wantMsg.Error(), `"`, `\"`)) {
			t.Errorf("min_valid=%s on the socket: %d %s; want 400 saying %v", bad, resp.StatusCode, body, wantMsg)
		}
	}
}

// TestRefreshDuringOutageKeepsTheToken: `tokenagent refresh` while the IdP
// is down keeps the still-valid token in service (exit 0, saying so),
// and callers go on getting it.
func TestRefreshDuringOutageKeepsTheToken(t *testing.T) {
	before, _, code := runCLI("token", "demo")
	if code != 0 {
		t.Fatal("token demo failed")
	}
	cliIdP.SetFault(idptest.Fault{Status: http.StatusServiceUnavailable})
	defer cliIdP.ClearFault()
	stdout, stderr, code := runCLI("refresh", "demo")
	if code != 0 || !strings.Contains(stdout, "kept the current token") {
		t.Errorf("refresh during an outage: exit %d\n%s%s", code, stdout, stderr)
	}
	if after, _, code := runCLI("token", "demo"); code != 0 || after != before {
		t.Errorf("after the failed refresh: exit %d, same token %v; want the old token served", code, after == before)
	}
}

// TestStatusFormats: status --format json is --json; an error (no agent)
// is said once, on stderr, with nothing on stdout.
func TestStatusFormats(t *testing.T) {
	a, _, _ := runCLI("status", "--json")
	b, _, _ := runCLI("status", "--format", "json")
	var x, y map[string]any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil || len(x["profiles"].([]any)) != len(y["profiles"].([]any)) {
		t.Errorf("status --format json and --json differ or do not parse:\n%s\n%s", a, b)
	}
	stdout, stderr, code := runCLI("status", "--format", "json", "--socket", filepath.Join(cliDir, "nothing.sock"))
	if code != cli.ExitUnreachable || stdout != "" || strings.Count(stderr, "nothing.sock") != 1 {
		t.Errorf("status with no agent: exit %d, stdout %q, stderr %q; want one error, on stderr", code, stdout, stderr)
	}
}
