package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

// fdLimit is the daemon's RLIMIT_NOFILE (soft and hard) in
// TestTokenEndpointOutOfFileDescriptors: above what the agent needs to
// start and serve (about a dozen descriptors), low enough that a few
// dozen held connections use up the rest (35 on Linux 6, Go 1.26).
const fdLimit = 48

// TestTokenEndpointOutOfFileDescriptors (issue 22, attack 1): a real
// tokenagentd at a real low file descriptor limit, its loopback token
// endpoint filled with keep-alive connections until it has no descriptor
// left to identify the next caller with. That caller is told to retry
// (503 temporarily_unavailable with Retry-After), never 401
// invalid_client, which OAuth clients take as a permanent verdict on
// their credentials; everyone else gets their token; the agent survives
// and serves again once the connections close.
//
// The connections are opened one after another, each sending a token
// request and reading its answer before the next is dialled, so the
// daemon's descriptors are spent in a known order. Each answered 200 is
// kept open and holds one descriptor of the agent's. Identifying a
// caller takes one more descriptor than accepting it: the netlink socket
// of the sock_diag lookup, opened at accept and closed right after. So
// the margin the test needs leaves itself: while two descriptors are
// free, a caller is accepted and identified (200, and one fewer is
// free); once one is left, the next caller is accepted with it and the
// lookup fails with EMFILE — the case of the issue, answered 503 with
// the connection closed, which gives the descriptor back for the next
// caller. The agent is at zero free descriptors only while such a 503's
// connection is being closed, so it does not stop accepting: a caller
// arriving then meets accept's EMFILE, which net/http retries after a
// pause of milliseconds ("http: Accept error … retrying in 5ms" in the
// agent's log), and is accepted — and answered 503 — once the
// descriptor is back.
func TestTokenEndpointOutOfFileDescriptors(t *testing.T) {
	t.Parallel() // its own daemon process, directory and port
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) not found: it starts the agent under a low RLIMIT_NOFILE")
	}
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "daemon-secret", Method: "client_secret_basic"})
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.toml")
	// No allow list: root and the agent's own user — the test's uid
	// either way, as the agent runs as the test's user — may use every
	// profile, so each caller the agent identifies is allowed.
	writeConfig(t, config, "store = \"memory\"\ntoken_endpoint = \"127.0.0.1:0\"\n"+profileTOML("p", idp.TokenURL, "c"))
	d := startDaemonUnder(t, []string{prlimit, fmt.Sprintf("--nofile=%d:%d", fdLimit, fdLimit), "--"}, config)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^Max open files\s+%d\s+%d\s`, fdLimit, fdLimit)).Match(limits) {
		t.Fatalf("the agent does not run at RLIMIT_NOFILE %d:\n%s", fdLimit, limits)
	}
	m := regexp.MustCompile(`"token_endpoint":"http://([^/"]+)/`).FindStringSubmatch(d.waitLog("serving the loopback OAuth 2.0 token endpoint"))
	if m == nil {
		t.Fatal("no token endpoint address in the agent's log")
	}
	addr := m[1]

	// Generous bounds, only so that nothing hangs: no duration is asserted.
	deadline := time.Now().Add(2 * time.Minute)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	statuses := map[string]int{} // "200", "503 temporarily_unavailable", …
	var unexpected []string
	// More callers than the agent has descriptors: some must find none
	// left. Five callers without a token are enough to see what they
	// are told.
	for i, refused := 0, 0; i < 4*fdLimit && refused < 5; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Minute)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.SetDeadline(deadline)
		resp, body, err := tokenRequest(c, addr)
		if err != nil {
			c.Close()
			unexpected = append(unexpected, fmt.Sprintf("connection %d: no answer: %v", i, err))
			statuses["no answer"]++
			continue
		}
		key := fmt.Sprint(resp.StatusCode)
		switch resp.StatusCode {
		case http.StatusOK:
			if !strings.Contains(body, `"access_token"`) || resp.Close {
				unexpected = append(unexpected, fmt.Sprintf("connection %d: 200 without a token or kept connection (close %v): %s", i, resp.Close, body))
			}
			held = append(held, c) // keep-alive: holds one of the agent's descriptors
		case http.StatusServiceUnavailable:
			if strings.Contains(body, `"temporarily_unavailable"`) {
				key += " temporarily_unavailable"
			}
			if key != "503 temporarily_unavailable" || resp.Header.Get("Retry-After") == "" {
				unexpected = append(unexpected, fmt.Sprintf("connection %d: 503 (Retry-After %q): %s", i, resp.Header.Get("Retry-After"), body))
			}
			// The agent closes it: wait for that, so that the descriptor
			// is on its way back before the next caller.
			io.Copy(io.Discard, c)
			c.Close()
		default:
			if strings.Contains(body, `"invalid_client"`) {
				key += " invalid_client"
			}
			unexpected = append(unexpected, fmt.Sprintf("connection %d: %d %s", i, resp.StatusCode, body))
			c.Close()
		}
		statuses[key]++
		if key != "200" {
			refused++
		}
		select {
		case <-d.done:
			t.Fatalf("the agent exited at connection %d; answers so far %v:\n%s", i, statuses, d.log())
		default:
		}
	}
	t.Logf("at RLIMIT_NOFILE %d: %d connections held open, answers %v", fdLimit, len(held), statuses)
	if n := statuses["401 invalid_client"]; n > 0 {
		t.Errorf("%d callers the agent could not identify for lack of descriptors were told 401 invalid_client (their credentials are wrong); want 503 temporarily_unavailable", n)
	}
	for _, u := range unexpected {
		t.Errorf("want only 200 or 503 temporarily_unavailable with Retry-After: %s", u)
	}
	if statuses["503 temporarily_unavailable"] == 0 {
		t.Errorf("no answer 503 temporarily_unavailable (answers %v): no caller found the agent out of descriptors, or none was told to retry", statuses)
	}
	if statuses["200"] == 0 {
		t.Errorf("no caller got a token (answers %v)", statuses)
	}

	// The connections close; their descriptors come back as the agent
	// notices. Until then a caller may still be asked to retry, and
	// retries, as an OAuth client would; then it gets its token.
	for _, c := range held {
		c.Close()
	}
	held = nil
	for attempt := 0; ; attempt++ {
		c, err := net.DialTimeout("tcp", addr, time.Minute)
		if err != nil {
			t.Fatalf("after the connections closed: %v", err)
		}
		c.SetDeadline(time.Now().Add(time.Minute))
		resp, body, err := tokenRequest(c, addr)
		c.Close()
		if err != nil {
			t.Fatalf("after the connections closed: no answer: %v", err)
		}
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the connections closed (attempt %d): %d %s; want 200, the agent recovered", attempt, resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-d.done:
		t.Fatal("the agent exited")
	default:
	}
	if n := d.logCount("LimitNOFILE"); n == 0 {
		t.Errorf("the agent's log does not tell the operator to raise its file descriptor limit")
	}
}

// tokenRequest sends a client_credentials request for profile p on c,
// keeping the connection alive, and reads the answer.
func tokenRequest(c net.Conn, addr string) (*http.Response, string, error) {
	form := "grant_type=client_credentials&client_id=p&client_secret=any"
	_, err := fmt.Fprintf(c, "POST /oauth2/token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", addr, len(form), form)
	if err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body), err
}
