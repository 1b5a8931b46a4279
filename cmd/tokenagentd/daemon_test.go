package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/store"
)

// agentProc is a real tokenagentd process.
type agentProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	socket string
	mu     sync.Mutex
	lines  []string
	cond   *sync.Cond
	done   chan struct{}
}

func startDaemon(t *testing.T, config string, env ...string) *agentProc {
	t.Helper()
	return startDaemonUnder(t, nil, config, env...)
}

// startDaemonUnder starts the daemon through a wrapper command that execs
// it (prlimit --nofile=N:N --), so that the wrapper's process is the
// daemon's.
func startDaemonUnder(t *testing.T, wrapper []string, config string, env ...string) *agentProc {
	t.Helper()
	return startDaemonWith(t, nil, wrapper, config, env...)
}

// startDaemonWith is startDaemonUnder with prepare, when not nil, called
// on the command before it starts (to pass descriptors).
func startDaemonWith(t *testing.T, prepare func(*exec.Cmd), wrapper []string, config string, env ...string) *agentProc {
	t.Helper()
	bin := buildBinary(t)
	dir := filepath.Dir(config)
	d := &agentProc{t: t, socket: filepath.Join(dir, "agent.sock"), done: make(chan struct{})}
	d.cond = sync.NewCond(&d.mu)
	argv := append(slices.Clone(wrapper), bin, "--config", config, "--socket", d.socket)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = append(os.Environ(), env...)
	if prepare != nil {
		prepare(d.cmd)
	}
	stderr, _ := d.cmd.StderrPipe()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.cond.Broadcast()
			d.mu.Unlock()
		}
		d.mu.Lock()
		close(d.done)
		d.cond.Broadcast()
		d.mu.Unlock()
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		d.cmd.Wait()
	})
	d.waitLog(`"message":"agent started"`)
	return d
}

// waitLog blocks until a log line contains s (counting from the first
// line), or fails if the process ends first.
func (d *agentProc) waitLog(s string) string {
	d.t.Helper()
	return d.waitLogN(s, 1)
}

// waitLogN blocks until n log lines contain s, and returns the nth, or
// fails if the process ends first.
func (d *agentProc) waitLogN(s string, n int) string {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, seen := 0, 0; ; {
		for ; i < len(d.lines); i++ {
			if strings.Contains(d.lines[i], s) {
				if seen++; seen == n {
					return d.lines[i]
				}
			}
		}
		select {
		case <-d.done:
			d.t.Fatalf("daemon exited before logging %q:\n%s", s, strings.Join(d.lines, "\n"))
		default:
		}
		d.cond.Wait()
	}
}

// log is every line the daemon has logged so far.
func (d *agentProc) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
}

func (d *agentProc) logCount(s string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, l := range d.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func profileTOML(name, tokenURL, client string) string {
	return fmt.Sprintf("[profiles.%s]\ntoken_url = %q\nclient_id = %q\nclient_secret = \"daemon-secret\"\n\n", name, tokenURL, client)
}

func TestSIGHUPReload(t *testing.T) {
	t.Parallel() // its own daemon process, directory and socket
	idp := idptest.New()
	defer idp.Close()
	for _, c := range []string{"keep", "drop", "new"} {
		idp.AddClient(idptest.Client{ID: c, Secret: "daemon-secret", Method: "client_secret_basic"})
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.toml")
	head := fmt.Sprintf("store = %q\n", filepath.Join(dir, "tokens.db"))
	writeConfig(t, config, head+profileTOML("keep", idp.TokenURL, "keep")+profileTOML("drop", idp.TokenURL, "drop"))
	d := startDaemon(t, config)
	c := &clientlib.Client{Socket: d.socket}
	ctx := context.Background()
	kept, err := c.Token(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Token(ctx, "drop"); err != nil {
		t.Fatal(err)
	}

	writeConfig(t, config, head+"log_level = \"debug\"\nlog_format = \"console\"\n"+profileTOML("keep", idp.TokenURL, "keep")+profileTOML("new", idp.TokenURL, "new"))
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(`"message":"configuration reloaded"`)
	if line := d.waitLog(`"setting":"log_format"`); !strings.Contains(line, "restart the agent") {
		t.Errorf("a start-only setting changed without a warning: %s", line)
	}
	profiles := names(t, c)
	if !slices.Equal(profiles, []string{"keep", "new"}) {
		t.Errorf("profiles after reload = %v, want [keep new]", profiles)
	}
	fresh := &clientlib.Client{Socket: d.socket} // no in-process reuse
	if tok, err := fresh.Token(ctx, "keep"); err != nil || tok.AccessToken != kept.AccessToken {
		t.Errorf("unchanged profile after reload: %v (same token: %v)", err, err == nil && tok.AccessToken == kept.AccessToken)
	}
	if n := idp.Requests("keep"); n != 1 {
		t.Errorf("IdP requests for the unchanged profile = %d, want 1 (not re-fetched)", n)
	}
	if _, err := fresh.Token(ctx, "new"); err != nil {
		t.Errorf("added profile: %v", err)
	}
	if _, err := fresh.Token(ctx, "drop"); err == nil {
		t.Error("removed profile still served")
	}

	// One log event per request (at debug, which the reload turned on):
	// caller, outcome, fingerprint, never the token.
	line := d.waitLog(`"path":"/v1/tokens/keep"`)
	for _, want := range []string{`"uid":0`, `"pid":`, `"exe":"`, `"profile":"keep"`, `"status":200`, `"token_sha256":"`, `"duration":`} {
		if !strings.Contains(line, want) {
			t.Errorf("request log event lacks %s: %s", want, line)
		}
	}
	if all := d.log(); strings.Contains(all, kept.AccessToken[len(kept.AccessToken)-40:]) {
		t.Error("the daemon's log contains an access token")
	}

	writeConfig(t, config, head+"log_level = \"debug\"\n"+profileTOML("keep", idp.TokenURL, "keep")+"bogus_key = 1\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	line = d.waitLog(`"message":"reload rejected`)
	if !strings.Contains(line, "bogus_key") {
		t.Errorf("rejection does not name the problem: %s", line)
	}
	if got := names(t, fresh); !slices.Equal(got, []string{"keep", "new"}) {
		t.Errorf("profiles after a broken reload = %v, want the old [keep new]", got)
	}
	if _, err := fresh.Token(ctx, "new"); err != nil {
		t.Errorf("after a broken reload: %v", err)
	}
}

func names(t *testing.T, c *clientlib.Client) []string {
	t.Helper()
	profiles, err := c.Profiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range profiles {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func TestMetricsListen(t *testing.T) {
	t.Parallel() // its own daemon process, directory and socket
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "daemon-secret", Method: "client_secret_basic"})
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.toml")
	writeConfig(t, config, "store = \"memory\"\nmetrics_listen = \"127.0.0.1:0\"\nmetrics_profiles = true\n" /* per-profile series without metrics_token: an explicit choice */ +profileTOML("p", idp.TokenURL, "c"))
	d := startDaemon(t, config)
	if _, err := (&clientlib.Client{Socket: d.socket}).Token(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	addr := regexp.MustCompile(`"metrics_listen":"([^"]+)"`).FindStringSubmatch(d.waitLog("serving /metrics over TCP"))
	resp, err := http.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `tokenagent_tokens_served_total{profile="p"} 1`) {
		t.Errorf("metrics over TCP: %d\n%s", resp.StatusCode, body)
	}
	if resp, err := http.Get("http://" + addr[1] + "/v1/tokens/p"); err == nil && resp.StatusCode == 200 {
		t.Error("the TCP listener serves tokens; it must serve /metrics only")
	}
	// A browser page (DNS rebinding, or a cross-site request) gets nothing.
	for _, h := range []http.Header{{"Host": {"rebind.attacker"}}, {"Origin": {"http://evil.example"}}, {"Referer": {"http://evil.example/"}}} {
		req, _ := http.NewRequest("GET", "http://"+addr[1]+"/metrics", nil)
		for k, v := range h {
			if k == "Host" {
				req.Host = v[0]
			} else {
				req.Header[k] = v
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "tokenagent_") {
			t.Errorf("metrics over TCP with %v: %d, want 403 and no series", h, resp.StatusCode)
		}
	}
}

var inFlightPattern = regexp.MustCompile(`(?m)^tokenagent_requests_in_flight (\d+)$`)

func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "daemon-secret", Method: "client_secret_basic"})
	hold := make(chan struct{})
	idp.SetFault(idptest.Fault{Hold: hold})
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.toml")
	dbPath := filepath.Join(dir, "tokens.db")
	writeConfig(t, config, fmt.Sprintf("store = %q\n", dbPath)+profileTOML("p", idp.TokenURL, "c"))
	d := startDaemon(t, config)

	const callers = 100
	results := make(chan error, callers)
	for range callers {
		go func() {
			c := &clientlib.Client{Socket: d.socket}
			_, err := c.Token(context.Background(), "p")
			results <- err
		}()
	}
	// Wait until all 100 are inside the agent, waiting on the one fetch.
	idp.WaitRequests(1)
	for inFlight(t, d.socket) < callers {
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog("shutting down: finishing requests in flight")
	close(hold) // the IdP answers; the drained requests complete
	for range callers {
		if err := <-results; err != nil {
			t.Errorf("request in flight at SIGTERM: %v", err)
		}
	}
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("agent exit after SIGTERM: %v, want 0", err)
	}
	// The store was closed cleanly: it reopens without recovery and holds the token.
	keyText, err := os.ReadFile(filepath.Join(dir, "store.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := store.ParseKey(keyText)
	st, err := store.Open(dbPath, store.Options{Key: key})
	if err != nil {
		t.Fatalf("store after SIGTERM: %v", err)
	}
	defer st.Close()
	if moved, _ := st.Recovered(); moved != "" {
		t.Error("store needed recovery after a clean SIGTERM")
	}
	if recs, _, _ := st.LoadAll(); len(recs) != 1 {
		t.Errorf("stored records = %d, want 1", len(recs))
	}
}

// inFlight reads tokenagent_requests_in_flight, not counting the metrics
// request itself.
func inFlight(t *testing.T, socket string) int {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	resp, err := hc.Get("http://tokenagent/metrics")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := inFlightPattern.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no in-flight gauge in /metrics:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n - 1
}

// TestDaemonIsNotDumpable: run as an ordinary user, the agent's /proc
// files (memory, environment) belong to root, not to that user — so
// another process of the same user cannot read its secrets — and core
// dumps are off.
func TestDaemonIsNotDumpable(t *testing.T) {
	t.Parallel() // its own daemon process, directory and socket
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the agent as another user")
	}
	other, err := user.Lookup("daemon")
	if err != nil {
		t.Skip("no user daemon on this host")
	}
	uid, _ := strconv.Atoi(other.Uid)
	dir := filepath.Join(testDir, "dumpable")
	os.MkdirAll(dir, 0o700)
	os.Chown(dir, uid, uid)
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(buildBinary(t), "--dev", "--socket", sock)
	cmd.Env = []string{"HOME=" + dir, "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("agent exited: %s", stderr.String())
		default:
		}
	}
	fi, err := os.Stat(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != 0 {
		t.Errorf("/proc/PID/environ of the agent (uid %d) is owned by uid %d; want root (PR_SET_DUMPABLE 0)", uid, owner)
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
	if !regexp.MustCompile(`(?m)^Max core file size\s+0\s+0\s`).Match(limits) {
		t.Errorf("core dumps not off:\n%s", limits)
	}
}

// TestRelativeConfigPath: `tokenagentd --config rel/agent.toml` resolves
// the path once, at start: the default store key goes beside the file,
// and SIGHUP reloads that file (before, it said there was none).
func TestRelativeConfigPath(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	base := t.TempDir()
	os.Mkdir(filepath.Join(base, "rel"), 0o700)
	writeConfig(t, filepath.Join(base, "rel", "agent.toml"), fmt.Sprintf("store = %q\n", filepath.Join(base, "state", "tokens.db"))+profileTOML("p", idp.TokenURL, "c"))
	cmd := exec.Command(buildBinary(t), "--config", "rel/agent.toml", "--socket", filepath.Join(base, "agent.sock"))
	cmd.Dir = base
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(stderr)
	wait := func(s string) {
		t.Helper()
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				return
			}
		}
		t.Fatalf("the daemon never logged %q", s)
	}
	wait(`"message":"agent started"`)
	if _, err := os.Stat(filepath.Join(base, "rel", "store.key")); err != nil {
		t.Errorf("store key not beside the configuration: %v", err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	wait("configuration reloaded")
}
