package localapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
	"github.com/tokenagent/tokenagent/ipc/localapi"
)

// TestMain doubles as the client run as another user (see runAs).
func TestMain(m *testing.M) {
	if sock := os.Getenv("TOKENAGENT_TEST_HOLD_SOCKET"); sock != "" {
		holdConnections(sock)
		return
	}
	if sock := os.Getenv("TOKENAGENT_TEST_CLIENT_SOCKET"); sock != "" {
		status, body, err := get(sock, os.Getenv("TOKENAGENT_TEST_CLIENT_PATH"), nil)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		if name := os.Getenv("TOKENAGENT_TEST_CLIENT_HEADER"); name != "" {
			body = lastHeader.Get(name) // what the test asked for instead of the body
		}
		fmt.Printf("%d\n%s", status, body)
		os.Exit(0)
	}
	code := m.Run()
	if clientBinDir != "" {
		os.RemoveAll(clientBinDir)
	}
	os.Exit(code)
}

// clientBin is this test binary, copied once where any user can run it.
var (
	clientBinOnce sync.Once
	clientBinDir  string
	clientBin     string
	clientBinErr  error
)

func clientBinary() (string, error) {
	clientBinOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			clientBinErr = err
			return
		}
		data, err := os.ReadFile(self)
		if err != nil {
			clientBinErr = err
			return
		}
		if clientBinDir, clientBinErr = os.MkdirTemp("", "tokenagent-client-"); clientBinErr != nil {
			return
		}
		os.Chmod(clientBinDir, 0o755)
		clientBin = filepath.Join(clientBinDir, "client.test")
		clientBinErr = os.WriteFile(clientBin, data, 0o755)
	})
	return clientBin, clientBinErr
}

const secret = "ipc-test-secret"

type env struct {
	t    *testing.T
	idp  *idptest.Server
	sock string

	mu     sync.Mutex
	events []door.RequestEvent
}

func (e *env) observed() []door.RequestEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]door.RequestEvent(nil), e.events...)
}

// serverOptions are the server settings a test may change.
type serverOptions struct {
	ReadHeaderTimeout time.Duration
}

// start runs a real agent (agenttest: the daemon's own wiring) with the
// given profiles (TOML after the header lines) on a fresh socket, and
// records the server's request events.
func start(t *testing.T, top, profiles string, so serverOptions) *env {
	t.Helper()
	e := &env{t: t}
	toml := strings.ReplaceAll(fmt.Sprintf("%s\n%s", top, profiles), "SECRET", secret)
	r, err := agenttest.StartWith(toml, agenttest.Options{
		ReadHeaderTimeout: so.ReadHeaderTimeout,
		Observe: func(ev door.RequestEvent) {
			ev.Caller.Exe = ev.Executable() // while the caller is there
			e.mu.Lock()
			defer e.mu.Unlock()
			e.events = append(e.events, ev)
		},
	})
	if err != nil {
		t.Fatalf("agenttest.Start: %v", err)
	}
	t.Cleanup(r.Close)
	r.IdP.AddClient(idptest.Client{ID: "c", Secret: secret, Method: "client_secret_basic"})
	e.idp, e.sock = r.IdP, r.Socket
	return e
}

// worldDir is a temp dir that every user can traverse, for sockets and
// binaries that a child process of another uid must reach.
func worldDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	return dir
}

func client(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// lastHeader is the header of the latest answer get read (for the child
// client of runAsHeader).
var lastHeader http.Header

func get(sock, path string, header http.Header) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+ipc.Host+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client(sock).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	lastHeader = resp.Header.Clone()
	if resp.Close { // net/http keeps Connection: close out of Header
		lastHeader.Set("Connection", "close")
	}
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func (e *env) get(path string, header http.Header) (int, string) {
	e.t.Helper()
	status, body, err := get(e.sock, path, header)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return status, body
}

const profileP = `
[profiles.p]
token_url = "IDP"
client_id = "c"
client_secret = "SECRET"
`

func TestTokenOverSocket(t *testing.T) {
	e := start(t, "", profileP, serverOptions{})
	status, body := e.get("/v1/tokens/p", nil)
	var tok ipc.TokenResponse
	if status != 200 || json.Unmarshal([]byte(body), &tok) != nil {
		t.Fatalf("GET /v1/tokens/p = %d %s", status, body)
	}
	if _, err := e.idp.VerifyToken(tok.AccessToken); err != nil || tok.TokenType != "Bearer" || tok.ExpiresIn < 3500 {
		t.Errorf("token response %+v does not hold a valid token (%v)", tok, err)
	}
	status, plain := e.get("/v1/tokens/p?min_valid=60s", http.Header{"Accept": {"text/plain"}})
	if status != 200 || plain != tok.AccessToken+"\n" {
		t.Errorf("text/plain answer = %d %q, want the bare token and a newline", status, plain)
	}

	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Log("curl not installed; the curl check is skipped (the Go client check above ran)")
		return
	}
	out, err := exec.Command(curl, "-sS", "--fail-with-body", "--unix-socket", e.sock, "http://tokenagent/v1/tokens/p").Output()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	var viaCurl ipc.TokenResponse
	if json.Unmarshal(out, &viaCurl) != nil || viaCurl.AccessToken != tok.AccessToken {
		t.Errorf("curl got %s, want the same token", out)
	}
	if n := e.idp.Requests("c"); n != 1 {
		t.Errorf("IdP requests = %d, want 1 for three socket requests", n)
	}
}

// runAs runs this test binary as a client under uid/gid, copied where that
// user can execute it, and returns the status and body it got.
func runAs(t *testing.T, uid, gid uint32, sock, path string, env ...string) (int, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child process as another user")
	}
	bin, err := clientBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"TOKENAGENT_TEST_CLIENT_SOCKET=" + sock, "TOKENAGENT_TEST_CLIENT_PATH=" + path,
		"GORACE=atexit_sleep_ms=0"} // a -race binary otherwise waits 1 s at exit
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	// stdout is the answer; stderr is apart (a -cover binary warns there).
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as uid %d: %v: %s %s", uid, err, out, stderr.String())
	}
	first, rest, _ := strings.Cut(string(out), "\n")
	status, _ := strconv.Atoi(first)
	return status, rest
}

func TestOtherUserAccess(t *testing.T) {
	e := start(t, `socket_mode = "0666"`, profileP+`
[profiles.for-nobody]
token_url = "IDP"
client_id = "c"
client_secret = "SECRET"
allow_users = ["nobody"]

[profiles.for-nogroup]
token_url = "IDP"
client_id = "c"
client_secret = "SECRET"
scopes = ["x"]
allow_gids = [65534]
`, serverOptions{})
	// Warm p so there is a token that must not leak.
	_, body := e.get("/v1/tokens/p", nil)
	var held ipc.TokenResponse
	json.Unmarshal([]byte(body), &held)

	status, body := runAs(t, 65534, 65534, e.sock, "/v1/tokens/p")
	if status != http.StatusNotFound {
		t.Errorf("uid 65534 on unlisted profile p: status %d, want 404 (as for a profile that does not exist)", status)
	}
	if strings.Contains(body, "access_token") || strings.Contains(body, held.AccessToken[:40]) {
		t.Errorf("refusal body leaks a token: %s", body)
	}
	// Existing but not theirs, and missing, answer alike: names cannot be
	// listed by guessing.
	missingStatus, missingBody := runAs(t, 65534, 65534, e.sock, "/v1/tokens/no-such-profile")
	if missingStatus != status || strings.ReplaceAll(missingBody, "no-such-profile", "p") != body {
		t.Errorf("uid 65534: existing-but-not-yours = %d %s; missing = %d %s; want the same answer", status, body, missingStatus, missingBody)
	}
	for _, p := range []string{"for-nobody", "for-nogroup"} {
		status, body = runAs(t, 65534, 65534, e.sock, "/v1/tokens/"+p)
		var tok ipc.TokenResponse
		if status != 200 || json.Unmarshal([]byte(body), &tok) != nil || tok.AccessToken == "" {
			t.Errorf("uid 65534 on %s (which lists it): %d %s, want a token", p, status, body)
		}
	}
	status, body = runAs(t, 65534, 65534, e.sock, "/v1/profiles")
	var list ipc.ProfilesResponse
	json.Unmarshal([]byte(body), &list)
	var names []string
	for _, p := range list.Profiles {
		names = append(names, p.Name)
	}
	if status != 200 || strings.Join(names, ",") != "for-nobody,for-nogroup" {
		t.Errorf("uid 65534 sees profiles %v, want only for-nobody and for-nogroup", names)
	}
	var denial *door.RequestEvent
	for _, ev := range e.observed() {
		if ev.Denied && ev.Profile == "p" {
			denial = &ev
		}
	}
	if denial == nil || denial.Caller.UID != 65534 || denial.Caller.GID != 65534 || denial.Caller.PID <= 0 || !strings.HasSuffix(denial.Caller.Exe, "client.test") {
		t.Errorf("denial event = %+v, want uid/gid 65534, the pid and the executable", denial)
	}
}

func TestSocketModeAndGroupWhateverTheUmask(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the socket a group it is not in")
	}
	daemon, err := user.LookupGroup("daemon")
	if err != nil {
		t.Skip("no daemon group on this host")
	}
	gid, _ := strconv.Atoi(daemon.Gid)
	for _, umask := range []int{0, 0o077, 0o022} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			e := start(t, `socket_mode = "0660"`+"\nsocket_group = \"daemon\"", profileP, serverOptions{})
			fi, err := os.Stat(e.sock)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != 0o660 || int(st.Gid) != gid {
				t.Errorf("socket mode %04o gid %d, want 0660 gid %d", fi.Mode().Perm(), st.Gid, gid)
			}
			di, _ := os.Stat(filepath.Dir(e.sock))
			if di.Mode().Perm() != 0o750 || int(di.Sys().(*syscall.Stat_t).Gid) != gid {
				t.Errorf("socket directory mode %04o, want 0750 with the socket's group", di.Mode().Perm())
			}
		})
	}
}

func TestSecondAgentAndStaleSocket(t *testing.T) {
	e := start(t, "", profileP, serverOptions{})
	_, err := door.Listen(e.sock, door.ListenConfig{Mode: 0o600, GID: -1})
	if !errors.Is(err, door.ErrInUse) || !strings.Contains(err.Error(), e.sock) {
		t.Errorf("second Listen on a live socket = %v, want ErrInUse naming it", err)
	}
	if status, _ := e.get("/v1/health", nil); status != 200 {
		t.Errorf("first agent after the second's attempt: health %d, want 200", status)
	}

	stale := filepath.Join(t.TempDir(), "stale.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close() // a crashed agent leaves this behind
	ln, err := door.Listen(stale, door.ListenConfig{Mode: 0o600, GID: -1})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()

	notSocket := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notSocket, []byte("x"), 0o600)
	if _, err := door.Listen(notSocket, door.ListenConfig{Mode: 0o600, GID: -1}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file = %v, want refusal", err)
	}
	if data, _ := os.ReadFile(notSocket); string(data) != "x" {
		t.Error("the regular file was touched")
	}
}

func TestIdleConnectionsAndSlowHeaders(t *testing.T) {
	e := start(t, "", profileP, serverOptions{ReadHeaderTimeout: 300 * time.Millisecond})
	var idle []net.Conn
	for range 1000 {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(idle), err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	slow, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "GET /v1/health HTTP/1.1\r\nHost: tokenagent\r\n") // and never the blank line

	for i := range 20 {
		if status, _ := e.get("/v1/tokens/p", nil); status != 200 {
			t.Fatalf("request %d beside 1,000 idle connections: status %d", i, status)
		}
	}
	// The slow client is cut off at ReadHeaderTimeout, not left hanging.
	slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(slow)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Error("slow-header connection was still open after 30 s")
	}
}

// holdConnections is the child of startHolder: it opens connections,
// sends one request on each and keeps them all open, printing the status
// each got, until its stdin closes.
func holdConnections(sock string) {
	n, _ := strconv.Atoi(os.Getenv("TOKENAGENT_TEST_HOLD_N"))
	var statuses []string
	var conns []net.Conn
	for range n {
		c, err := net.Dial("unix", sock)
		if err != nil {
			statuses = append(statuses, "dial-error")
			continue
		}
		conns = append(conns, c)
		io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: tokenagent\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			statuses = append(statuses, "eof")
			continue
		}
		io.Copy(io.Discard, resp.Body)
		statuses = append(statuses, strconv.Itoa(resp.StatusCode))
	}
	fmt.Println(strings.Join(statuses, " "))
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// startHolder runs holdConnections as uid, opening n connections, and
// returns the statuses they got; the connections stay open until the
// test ends.
func startHolder(t *testing.T, uid int, sock string, n int) []string {
	t.Helper()
	bin, err := clientBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"TOKENAGENT_TEST_HOLD_SOCKET=" + sock, "TOKENAGENT_TEST_HOLD_N=" + strconv.Itoa(n), "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	return strings.Fields(line)
}

// TestOneUserCannotLockOthersOut: a user who holds idle connections gets
// at most its share (max_connections_per_uid); other users still get
// through, and root and the agent's own user always do, even with every
// slot taken.
func TestOneUserCannotLockOthersOut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as other users")
	}
	attacker, err1 := user.Lookup("daemon")
	other, err2 := user.Lookup("bin")
	if err1 != nil || err2 != nil {
		t.Skip("needs the users daemon and bin")
	}
	attackerUID, _ := strconv.Atoi(attacker.Uid)
	otherUID, _ := strconv.Atoi(other.Uid)
	// Every holder may use a profile: callers who may use none do not keep
	// their connections at all (TestNoAccessConnectionsClosed).
	e := start(t, "socket_mode = \"0666\"\nmax_connections = 20\nmax_connections_per_uid = 5", profileP+`
[profiles.shared]
token_url = "IDP"
client_id = "c"
client_secret = "SECRET"
scopes = ["shared"]
allow_uids = [1, 2, 3, 65534]
`, serverOptions{})
	got := startHolder(t, attackerUID, e.sock, 25)
	if ok := strings.Count(strings.Join(got, " "), "200"); ok != 5 {
		t.Errorf("one uid holding 25 connections got %d answered (%v); want its share, 5", ok, got)
	}
	for i := 5; i < len(got); i++ {
		if got[i] != "503" {
			t.Errorf("connection %d beyond the share got %s, want an immediate 503", i, got[i])
			break
		}
	}
	if status, _ := runAs(t, uint32(otherUID), uint32(otherUID), e.sock, "/v1/health"); status != 200 {
		t.Errorf("another user while the first holds its share: %d, want 200", status)
	}
	// Fill every slot from two more uids; root still gets through.
	startHolder(t, otherUID, e.sock, 5)
	startHolder(t, 65534, e.sock, 5)
	startHolder(t, 3, e.sock, 5) // sys
	// Root's connections have a budget of their own, as large: others
	// cannot take it, and a storm of root's own is bounded by it.
	var held []net.Conn
	for range 19 {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if status, _ := e.get("/v1/tokens/p", nil); status != 200 {
		t.Errorf("root with every other slot taken: %d, want 200", status)
	}
	for range 2 { // e.get's own connection is kept alive: 20 then
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	c := held[len(held)-1]
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /v1/health HTTP/1.1\r\nHost: tokenagent\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("root's connection beyond its budget: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("root's connection beyond its own budget (max_connections): %d, want 503: a storm of root's connections is bounded too", resp.StatusCode)
	}
}

func TestStatuses(t *testing.T) {
	// A port with nothing listening: the IdP is down.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + l.Addr().String() + "/token"
	l.Close()
	e := start(t, "", profileP+`
[profiles.bad-client]
token_url = "IDP"
client_id = "unknown-client"
client_secret = "SECRET"

[profiles.down]
token_url = "`+down+`"
client_id = "c"
client_secret = "SECRET"
`, serverOptions{})
	e.idp.SetTTL(60 * time.Second)
	big := strings.Repeat("x", 20<<10)
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		body   string
		status int
		code   string
		desc   string
	}{
		{name: "unknown profile", path: "/v1/tokens/nope", status: 404, code: ipc.CodeUnknownProfile},
		{name: "no such endpoint", path: "/v2/tokens/p", status: 404, code: ipc.CodeNotFound},
		{name: "bad profile name", path: "/v1/tokens/a%20b", status: 400, code: ipc.CodeInvalidRequest},
		{name: "Origin", path: "/v1/tokens/p", header: http.Header{"Origin": {"http://evil.example"}}, status: 403, code: ipc.CodeForbidden},
		{name: "Referer", path: "/v1/tokens/p", header: http.Header{"Referer": {"http://evil.example/"}}, status: 403, code: ipc.CodeForbidden},
		{name: "other Host", path: "/v1/tokens/p", header: http.Header{"Host": {"localhost"}}, status: 403, code: ipc.CodeForbidden},
		{name: "oversized header", path: "/v1/tokens/p", header: http.Header{"X-Big": {big}}, status: 431},
		{name: "IdP invalid_client", path: "/v1/tokens/bad-client", status: 502, code: "invalid_client", desc: "client authentication failed"},
		{name: "IdP down, no token", path: "/v1/tokens/down", status: 503, code: ipc.CodeIdPUnavailable, desc: "connection refused"},
		{name: "min_valid beyond TTL", path: "/v1/tokens/p?min_valid=5m", status: 400, code: ipc.CodeMinValid, desc: "; asked for 5m0s"},
		{name: "bad min_valid", path: "/v1/tokens/p?min_valid=soon", status: 400, code: ipc.CodeInvalidRequest, desc: "min_valid"},
		{name: "unknown parameter", path: "/v1/tokens/p?scope=admin", status: 400, code: ipc.CodeInvalidRequest, desc: "scope"},
		{name: "POST to token", method: "POST", path: "/v1/tokens/p", status: 405, code: ipc.CodeMethod},
		{name: "bad refresh body", method: "POST", path: "/v1/tokens/p/refresh", body: `{"rejected":"x"}`, status: 400, code: ipc.CodeInvalidRequest},
		{name: "bad rejected_sha256", method: "POST", path: "/v1/tokens/p/refresh", body: `{"rejected_sha256":"zz"}`, status: 400, code: ipc.CodeInvalidRequest},
		{name: "refresh", method: "POST", path: "/v1/tokens/p/refresh", status: 200},
		{name: "health", path: "/v1/health", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			req, _ := http.NewRequest(method, "http://tokenagent"+tt.path, strings.NewReader(tt.body))
			for k, v := range tt.header {
				if k == "Host" {
					req.Host = v[0]
					continue
				}
				req.Header[k] = v
			}
			resp, err := client(e.sock).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", method, tt.path, resp.StatusCode, body, tt.status)
			}
			if tt.code == "" {
				return
			}
			var er ipc.ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil || er.Error != tt.code || !strings.Contains(er.ErrorDescription, tt.desc) {
				t.Errorf("body = %s, want error %q with a description mentioning %q", body, tt.code, tt.desc)
			}
			if strings.Contains(string(body), secret) {
				t.Errorf("body contains the client secret: %s", body)
			}
		})
	}
	// A 503 while the agent holds off the IdP says when to come back.
	resp, err := client(e.sock).Get("http://tokenagent/v1/tokens/down")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request to a down IdP: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestUnreadablePeerCredentialsFailClosed: a connection whose peer
// credentials the server cannot read gets 403 on every endpoint, and the
// backend is never asked.
func TestUnreadablePeerCredentialsFailClosed(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "plain.sock")
	// A plain listener, not Listen's: its connections carry no credentials.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var events []door.RequestEvent
	var mu sync.Mutex
	srv := localapi.New(localapi.Config{Observe: func(ev door.RequestEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}}) // no Backend: reaching it would panic
	go srv.Serve(ln)
	defer srv.Close()
	for _, path := range []string{"/v1/health", "/v1/tokens/p", "/v1/profiles", "/metrics"} {
		status, body, err := get(sock, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusForbidden || !strings.Contains(body, "peer credentials") {
			t.Errorf("GET %s without readable credentials = %d %s, want 403 naming the peer credentials", path, status, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 4 || events[0].Code != ipc.CodeForbidden {
		t.Errorf("events = %+v, want 4 forbidden", events)
	}
}

// TestMetricsRefusedToOtherUsers: /metrics is for root and the agent's
// own user; another uid that may connect gets 403 and no series.
func TestMetricsRefusedToOtherUsers(t *testing.T) {
	e := start(t, `socket_mode = "0666"`, profileP, serverOptions{})
	if status, body := e.get("/metrics", nil); status != 200 || !strings.Contains(body, "tokenagent_requests_total") {
		t.Fatalf("/metrics as the agent's user = %d, want 200 with series", status)
	}
	status, body := runAs(t, 65534, 65534, e.sock, "/metrics")
	if status != http.StatusForbidden || strings.Contains(body, "tokenagent_") {
		t.Errorf("/metrics as uid 65534 = %d %s, want 403 and no series", status, body)
	}
}

// TestDebugProfilesForRootOnly: /debug/pprof/ gives the runtime's
// profiles (what holds the memory, where goroutines wait) to root and
// the agent's user, and nothing to anyone else.
func TestDebugProfilesForRootOnly(t *testing.T) {
	e := start(t, `socket_mode = "0666"`, profileP, serverOptions{})
	if status, body := e.get("/debug/pprof/goroutine?debug=1", nil); status != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Fatalf("/debug/pprof/goroutine as the agent's user = %d %.100s, want 200 with the profile", status, body)
	}
	if status, _ := e.get("/debug/pprof/heap", nil); status != 200 {
		t.Errorf("/debug/pprof/heap as the agent's user = %d, want 200", status)
	}
	status, body := runAs(t, 2, 2, e.sock, "/debug/pprof/goroutine?debug=1")
	if status != http.StatusForbidden || strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ as uid 2 = %d %.100s, want 403 and no profile", status, body)
	}
}

// TestNoAccessConnectionsClosed: a caller who may use no profile gets its
// answer and the connection closed, so that it cannot hold connections.
func TestNoAccessConnectionsClosed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	e := start(t, `socket_mode = "0666"`, profileP, serverOptions{})
	got := startHolder(t, 2, e.sock, 3) // uid 2 (bin) may use no profile
	if strings.Join(got, " ") != "200 200 200" {
		t.Fatalf("health for a caller with no profile: %v", got)
	}
	status, body := runAs(t, 2, 2, e.sock, "/v1/health", "TOKENAGENT_TEST_CLIENT_HEADER=Connection")
	if status != 200 || !strings.EqualFold(body, "close") {
		t.Errorf("answer to a caller with no profile: %d, Connection %q; want 200 and Connection: close", status, body)
	}
	if resp, err := client(e.sock).Get("http://tokenagent/v1/health"); err != nil || resp.Close {
		t.Errorf("root's connection: %v (closed: %v), want kept alive", err, err == nil && resp.Close)
	}
}

// TestConnectionCap: beyond max_connections a connection (of a user who
// is not root or the agent's) gets an immediate 503
// too_many_connections, never a hang.
func TestConnectionCap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as other users")
	}
	e := start(t, "socket_mode = \"0666\"\nmax_connections = 6\nmax_connections_per_uid = 3", profileP+`
[profiles.shared]
token_url = "IDP"
client_id = "c"
client_secret = "SECRET"
scopes = ["shared"]
allow_uids = [1, 2, 3]
`, serverOptions{})
	startHolder(t, 1, e.sock, 3)
	startHolder(t, 2, e.sock, 3)
	if got := startHolder(t, 3, e.sock, 1); strings.Join(got, " ") != "503" {
		t.Errorf("over the cap: %v, want an immediate 503", got)
	}
}

// TestCallerProgramNameIsText: a local user who names a program with
// terminal escape sequences or bidi overrides does not get them into the
// agent's request log: the executable is recorded as text.
func TestCallerProgramNameIsText(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	e := start(t, `socket_mode = "0666"`, profileP, serverOptions{})
	self, _ := os.Executable()
	data, _ := os.ReadFile(self)
	dir := worldDir(t)
	bin := filepath.Join(dir, "evil\x1b[2J\u202eexe\x07.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"TOKENAGENT_TEST_CLIENT_SOCKET=" + e.sock, "TOKENAGENT_TEST_CLIENT_PATH=/v1/health", "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 2, Gid: 2, Groups: []uint32{}}}
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("client: %v %s", err, out)
	}
	var exe string
	for _, ev := range e.observed() {
		if ev.Caller.UID == 2 {
			exe = ev.Caller.Exe
		}
	}
	if !strings.Contains(exe, "evil") {
		t.Fatalf("no request event with the client's program (%q)", exe)
	}
	for _, r := range exe {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			t.Errorf("the logged program name %q carries control or format character %U", exe, r)
		}
	}
}

// TestNetHTTPErrorsAreJSON: the errors net/http answers by itself — a
// header too large (431), a request it cannot parse (400) — are JSON like
// every other error of the agent's, and repeat nothing of the request.
func TestNetHTTPErrorsAreJSON(t *testing.T) {
	e := start(t, "", profileP, serverOptions{})
	for name, req := range map[string]string{
		"431": "GET /v1/tokens/p HTTP/1.1\r\nHost: tokenagent\r\nX-Big: " + strings.Repeat("s3cret", 5000) + "\r\n\r\n",
		"400": "GARBAGE s3cret\r\n\r\n",
	} {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		var er ipc.ErrorResponse
		if strconv.Itoa(resp.StatusCode) != name || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &er) != nil || er.Error != ipc.CodeInvalidRequest {
			t.Errorf("%s: %d %q %s; want %s with a JSON invalid_request", name, resp.StatusCode, resp.Header.Get("Content-Type"), body, name)
		}
		if strings.Contains(string(body), "s3cret") {
			t.Errorf("%s: the answer repeats the request: %s", name, body)
		}
	}
}
