package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/agent/sink/sinktest"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

// testDir is world-traversable: sockets and built binaries that child
// processes (some under another uid) must reach.
var testDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenagentd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	testDir = dir
	// What check-config judges must not depend on whether this host has
	// the package's user (TestCheckConfigDefaultsToPackageUser sets it).
	packageUser = ""
	// Nor on what this host keeps at the default socket path (a package
	// installed here makes /run/tokenagent the service user's, which a
	// root agent rightly refuses): a test that names no socket gets one
	// of its own.
	os.Setenv("TOKENAGENT_SOCKET", filepath.Join(dir, "run", "agent.sock"))
	// A whole-package run (no -run) needs both binaries: link them while
	// the first tests run, rather than when the first daemon test asks.
	flag.Parse()
	var prebuilt []*buildResult
	if flag.Lookup("test.run").Value.String() == "" {
		for pkg, name := range map[string]string{".": "tokenagentd", "../tokenagent": "tokenagent"} {
			b := buildOf(pkg, name)
			prebuilt = append(prebuilt, b)
			go b.once.Do(b.build)
		}
	}
	code := m.Run()
	for _, b := range prebuilt {
		b.once.Do(func() {}) // wait for it: the build writes into testDir
	}
	if interopStop != nil {
		interopStop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs tokenagentd's command line in process and returns stdout,
// stderr and the exit code.
func runCLI(args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	code := exitCode(run(context.Background(), args, &stdout, &stderr), &stderr)
	return stdout.String(), stderr.String(), code
}

var builds sync.Map // package dir → *buildResult

type buildResult struct {
	once      sync.Once
	pkg, path string
	err       error
}

// buildOf returns the one build of pkg into testDir/name, started or not.
func buildOf(pkg, name string) *buildResult {
	v, _ := builds.LoadOrStore(pkg, &buildResult{pkg: pkg, path: filepath.Join(testDir, name)})
	return v.(*buildResult)
}

func (b *buildResult) build() {
	out, err := exec.Command("go", "build", "-o", b.path, b.pkg).CombinedOutput()
	if err != nil {
		b.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
	}
}

// buildBinary builds the daemon once per test run, for tests that need a
// separate process (signals, other uids).
func buildBinary(t *testing.T) string { return build(t, ".", "tokenagentd") }

// buildCLI builds the client, tokenagent, once per test run.
func buildCLI(t *testing.T) string { return build(t, "../tokenagent", "tokenagent") }

func build(t *testing.T, pkg, name string) string {
	t.Helper()
	b := buildOf(pkg, name)
	b.once.Do(b.build)
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func TestRunDevServesDemoToken(t *testing.T) {
	t.Setenv(ipc.EnvSocket, "") // --dev picks a socket of its own
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--dev"}, io.Discard, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if strings.Contains(line, "demo token ready") {
			if !strings.Contains(line, `"token_sha256":"`) {
				t.Errorf("ready line lacks the token fingerprint: %s", line)
			}
			cancel()
			go io.Copy(io.Discard, pr)
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("run --dev: %v\n%s", err, strings.Join(lines, "\n"))
	}
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, `"message":"token fetched"`) {
		t.Errorf("log lacks the fetch event:\n%s", joined)
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	// Store and socket of its own: check-config judges their directories
	// as start would, and the host's defaults are not this test's business.
	hermetic := fmt.Sprintf("store = \"memory\"\nsocket = %q\n", filepath.Join(dir, "agent.sock"))
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte(hermetic+"[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:TEST_CC_SECRET\"\n"), 0o600)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclientid = \"c\"\n"), 0o600)
	openMetrics := filepath.Join(dir, "metrics.toml")
	os.WriteFile(openMetrics, []byte(hermetic+"metrics_listen = \":9464\"\n[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:TEST_CC_SECRET\"\n"), 0o600)
	t.Setenv("TEST_CC_SECRET", "x")
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrWant string
	}{
		{"unknown command", []string{"frobnicate"}, cli.ExitUsage, "", `unknown command "frobnicate"`},
		{"client command", []string{"token", "p"}, cli.ExitUsage, "", "use `tokenagent token`"},
		{"bad flag", []string{"--nope"}, cli.ExitUsage, "", "-nope"},
		{"bad flag after run", []string{"run", "--nope"}, cli.ExitUsage, "", "-nope"},
		{"arguments", []string{"--config", good, "extra"}, cli.ExitUsage, "", "unexpected arguments"},
		{"dev and config", []string{"--dev", "--config", good}, cli.ExitUsage, "", "exclusive"},
		{"version", []string{"version"}, cli.ExitOK, "tokenagentd ", ""},
		{"help", []string{"help"}, cli.ExitOK, "usage: tokenagentd", ""},
		{"check-config ok", []string{"check-config", good}, cli.ExitOK, "ok, 1 profile(s): p", ""},
		{"check-config unknown key", []string{"check-config", bad}, cli.ExitFailure, "", "bad.toml:3: unknown key \"clientid\""},
		{"check-config missing file", []string{"check-config", filepath.Join(dir, "nope.toml")}, cli.ExitFailure, "", "nope.toml"},
		{"check-config two files", []string{"check-config", good, bad}, cli.ExitUsage, "", "one configuration"},
		{"check-config open metrics_listen", []string{"check-config", openMetrics}, cli.ExitOK, "ok, 1 profile(s)", `warning: metrics_listen = ":9464" is reachable from other hosts`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			if code := exitCode(err, &stderr); code != tt.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderrWant) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.stderrWant)
			}
		})
	}
}

// TestDaemonLinksNoTestFixtures: the production daemon's --dev runs
// agent/demoidp, never the test IdP or net/http/httptest.
func TestDaemonLinksNoTestFixtures(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/tokenagent/tokenagent/agent/demoidp") {
		t.Fatalf("go list -deps does not list agent/demoidp; the check below would mean nothing:\n%s", out)
	}
	for _, fixture := range []string{"net/http/httptest", "github.com/tokenagent/tokenagent/agent/idptest", "github.com/tokenagent/tokenagent/agent/agenttest", "testing"} {
		if slices.Contains(deps, fixture) {
			t.Errorf("tokenagentd links %s", fixture)
		}
	}
}

// TestCheckConfigFindsWhatRunRefuses: check-config refuses what start
// would (no profiles; stored records sealed with a key the configuration
// no longer has), warns of a literal secret that looks like a file name,
// takes --config like the daemon and resolves a relative path as start
// does, and says where the socket is and how clients find it.
func TestCheckConfigFindsWhatRunRefuses(t *testing.T) {
	dir := t.TempDir()
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "check-config-secret", Method: "client_secret_basic"})
	db := filepath.Join(dir, "state", "tokens.db")
	profile := func(name, secret string) string {
		return fmt.Sprintf("[profiles.%s]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\n", name, idp.TokenURL, secret)
	}
	cfgPath := filepath.Join(dir, "agent.toml")
	writeConfig(t, cfgPath, fmt.Sprintf("store = %q\n", db)+profile("good", "check-config-secret")+profile("bad", "wrong-secret"))

	empty := filepath.Join(dir, "empty.toml")
	writeConfig(t, empty, "store = \"memory\"\n")
	if _, stderr, code := runCLI("check-config", empty); code != cli.ExitFailure || !strings.Contains(stderr, "no profiles") {
		t.Errorf("no profiles: exit %d, %q", code, stderr)
	}

	// Relative --config, from the config's directory: the key goes beside it.
	wd, _ := os.Getwd()
	os.Chdir(dir)
	stdout, stderr, code := runCLI("check-config", "--config", "agent.toml", "--socket", filepath.Join(dir, "agent.sock"))
	os.Chdir(wd)
	if code != cli.ExitOK || !strings.Contains(stdout, filepath.Join(dir, "store.key")) || !strings.Contains(stdout, "socket: "+filepath.Join(dir, "agent.sock")) ||
		!strings.Contains(stdout, "export TOKENAGENT_SOCKET="+filepath.Join(dir, "agent.sock")) {
		t.Errorf("check-config --config agent.toml: exit %d\n%s%s", code, stdout, stderr)
	}

	// Records sealed with a key that is gone: start would refuse.
	cfg, err := secretref.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := agent.OpenStore(cfg) // creates store.key
	if err != nil {
		t.Fatal(err)
	}
	st.Put(store.Record{Profile: "good", AccessToken: "eyJ.x.y", ExpiresAt: time.Now().Add(time.Hour), ObtainedAt: time.Now()})
	st.Close()
	newKey, _ := store.NewKeyText()
	writeConfig(t, filepath.Join(dir, "store.key"), string(newKey))
	if _, stderr, code := runCLI("check-config", cfgPath); code != cli.ExitFailure || !strings.Contains(stderr, "would refuse to start") || !strings.Contains(stderr, "store_key_previous") {
		t.Errorf("store key changed: exit %d, %q; want the refusal start would give", code, stderr)
	}
	os.Remove(db)

	// A literal secret that is a file name; --online asks each IdP once.
	writeFile := filepath.Join(dir, "good.secret")
	writeConfig(t, writeFile, "check-config-secret")
	writeConfig(t, cfgPath, fmt.Sprintf("store = %q\n", db)+profile("good", "check-config-secret")+profile("bad", "wrong-secret")+profile("typo", "good.secret"))
	stdout, stderr, code = runCLI("check-config", cfgPath, "--online")
	if !strings.Contains(stderr, `warning: profile "typo": client_secret is literal text that looks like a file name`) {
		t.Errorf("no warning for client_secret = \"good.secret\":\n%s", stderr)
	}
	if code != cli.ExitIdP || !strings.Contains(stdout, "profile good: ok") || !regexp.MustCompile(`profile bad: FAILED: .*invalid_client`).MatchString(stdout) {
		t.Errorf("check-config --online: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, tok := range idp.Issued() {
		if strings.Contains(stdout+stderr, tok) {
			t.Error("check-config --online printed a token")
		}
	}
}

// TestReadmeCommandsWorkAgainstDev runs the README's client commands
// ("Using it") against `tokenagentd --dev`, as a newcomer would after its
// export line: each must exit 0.
func TestReadmeCommandsWorkAgainstDev(t *testing.T) {
	t.Parallel() // its own daemon process, directory and socket
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var commands [][]string
	for _, line := range strings.Split(string(readme), "\n") {
		line, _, _ = strings.Cut(strings.TrimSpace(line), "#")
		line = strings.TrimSpace(line)
		if inner, ok := strings.CutPrefix(line, `eval "$(`); ok {
			line = strings.TrimSuffix(inner, `)"`)
		}
		if f := strings.Fields(line); len(f) > 1 && f[0] == "tokenagent" && strings.Contains(line, "demo") || line == "tokenagent status" {
			for i := range f {
				if f[i] == "./job.sh" {
					f[i] = "true" // the job itself is the reader's
				}
			}
			commands = append(commands, f[1:])
		}
	}
	if len(commands) < 6 {
		t.Fatalf("found %d tokenagent commands in the README, want its examples", len(commands))
	}
	cmd := exec.Command(buildBinary(t), "--dev")
	cmd.Env = append(os.Environ(), ipc.EnvSocket+"=")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	// Its hints: the export line, then commands to try, then a blank line.
	var socket string
	var hints []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if s, ok := strings.CutPrefix(line, "export TOKENAGENT_SOCKET="); ok {
			socket = s
			continue
		}
		if socket != "" {
			if line == "" {
				break
			}
			hints = append(hints, line)
		}
	}
	go io.Copy(io.Discard, stderr)
	if socket == "" || len(hints) < 3 {
		t.Fatalf("tokenagent --dev printed no export line or hints (%q)", hints)
	}
	cli := buildCLI(t)
	// The hints run as printed, in a shell, with the CLI on PATH.
	for _, hint := range hints {
		sh := exec.Command("/bin/sh", "-c", hint)
		sh.Env = append(os.Environ(), ipc.EnvSocket+"="+socket, "PATH="+filepath.Dir(cli)+":"+os.Getenv("PATH"))
		if out, err := sh.CombinedOutput(); err != nil {
			t.Errorf("--dev hint %q: %v\n%s", hint, err, out)
		}
	}
	for _, args := range commands {
		c := exec.Command(cli, args...)
		c.Env = append(os.Environ(), ipc.EnvSocket+"="+socket)
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("README: tokenagent %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestDaemonHelp: every command's --help and -h is on stdout, exit 0, with
// an example and the exit codes (the daemon's own help lists the commands).
func TestDaemonHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"check-config", "--help"}, {"check-config", "-h"}, {"service", "--help"}} {
		stdout, stderr, code := runCLI(args...)
		if code != cli.ExitOK || stderr != "" || !strings.HasPrefix(stdout, "usage: tokenagentd") {
			t.Errorf("tokenagentd %s: exit %d, stderr %q, stdout %.60q", strings.Join(args, " "), code, stderr, stdout)
		}
		if args[0] != "--help" && args[0] != "-h" && args[0] != "help" && (!strings.Contains(stdout, "example:") || !strings.Contains(stdout, "exit codes:")) {
			t.Errorf("tokenagentd %s lacks an example or the exit codes:\n%s", strings.Join(args, " "), stdout)
		}
	}
	if stdout, _, code := runCLI("--version"); code != cli.ExitOK || !strings.HasPrefix(stdout, "tokenagentd ") {
		t.Errorf("tokenagentd --version: exit %d, %q", code, stdout)
	}
	if _, stderr, code := runCLI("check-config", "--bogus"); code != cli.ExitUsage || !strings.Contains(stderr, "tokenagentd check-config --help") {
		t.Errorf("a wrong flag: exit %d, %q", code, stderr)
	}
}

// TestCheckConfigRefusesSinkAttacks: check-config says not ok, naming the
// path, for each file-sink attack an unprivileged user can stage in a
// sticky shared directory: the sink's directory replaced by a link to a
// folder of root's (it used to say ok, judging the link by its target),
// a directory the attacker made first, and a file planted at the path.
func TestCheckConfigRefusesSinkAttacks(t *testing.T) {
	s := sinktest.New(t)
	for _, tc := range []struct{ name, sinkDir, attack, want string }{
		{"link to root's folder", "linked", "ln -s " + s.Victims[0] + " " + filepath.Join(s.Shared, "linked"), "symbolic link"},
		{"directory the attacker made", "made", "mkdir -m 0755 " + filepath.Join(s.Shared, "made"), "uid " + strconv.Itoa(s.UID)},
		{"file planted in the shared directory", ".", "echo attacker-token > " + filepath.Join(s.Shared, "p"), "writable by group or others"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Attack(t, tc.attack)
			dir := filepath.Clean(filepath.Join(s.Shared, tc.sinkDir))
			cfgPath := filepath.Join(s.Base, strings.ReplaceAll(tc.name, " ", "-")+".toml")
			writeConfig(t, cfgPath, fmt.Sprintf("store = \"memory\"\n[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"check-config-secret\"\n[[profiles.p.files]]\npath = %q\n", filepath.Join(dir, "p")))
			stdout, stderr, code := runCLI("check-config", cfgPath)
			if code != cli.ExitFailure || !strings.Contains(stderr, dir) || !strings.Contains(stderr, tc.want) {
				t.Errorf("check-config with a sink attacked by %s: exit %d\n%s%s\nwant not ok, naming %s and %q", tc.name, code, stdout, stderr, dir, tc.want)
			}
		})
	}
	s.VictimsIntact(t)
}
