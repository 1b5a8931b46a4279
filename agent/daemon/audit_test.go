package daemon_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/ipc"
)

// auditEntry is what the test reads back from an audit line.
type auditEntry struct {
	Door        string  `json:"door"`
	Conn        uint64  `json:"conn"`
	UID         *uint32 `json:"uid"`
	PID         *int32  `json:"pid"`
	Exe         string  `json:"exe"`
	Profile     string  `json:"profile"`
	TokenSHA256 string  `json:"token_sha256"`
}

// readAudit reads every line of the files, failing on one that is not
// an audit line.
func readAudit(t *testing.T, files ...string) []auditEntry {
	t.Helper()
	var all []auditEntry
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e auditEntry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.TokenSHA256 == "" || e.UID == nil || (e.Door == "socket") != (e.PID != nil) {
				t.Errorf("%s: line %q is not an audit line of an identified caller, with a pid on the socket only (%v)", name, sc.Text(), err)
			}
			all = append(all, e)
		}
		f.Close()
	}
	return all
}

// TestAuditLogOneLinePerTokenAcrossRotation (issue 23, item 4): with
// audit_log set, every token handed out — on the socket and on the token
// endpoint — is one line (door, caller, profile, fingerprint, never the
// token), and nothing else is. The file is renamed as logrotate does and
// the agent reloaded (SIGHUP's path) while callers keep asking: the old
// and the new file together hold every token exactly once, each
// connection's line once.
func TestAuditLogOneLinePerTokenAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	audit := filepath.Join(dir, "log", "audit.log")
	f := newFixture(t, fmt.Sprintf("token_endpoint = \"127.0.0.1:0\"\naudit_log = %q", audit))
	d, log := f.loggedDaemon(t, daemon.Options{})
	_, stop := serve(t, d)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	endpoint := "http://" + d.TokenEndpointAddr().String() + "/oauth2/token"
	form := "grant_type=client_credentials&client_id=p&client_secret=unused"
	var tokens sync.Map // every access token handed out
	var handed atomic.Int64
	twoHundred := make(chan struct{}) // closed at the 200th token
	// One request per connection: each line's (door, conn) is unique.
	token := func(t *testing.T, onEndpoint bool) {
		var req *http.Request
		hc := socketClient(f.socket, false)
		if onEndpoint {
			req, hc = postForm(endpoint, form), &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		} else {
			req = get("http://tokenagent/v1/tokens/p")
		}
		code, body := do(t, hc, req)
		if code != 200 {
			t.Errorf("token = %d %s", code, body)
			return
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal([]byte(body), &tok)
		tokens.Store(tok.AccessToken, true)
		if handed.Add(1) == 200 {
			close(twoHundred)
		}
	}
	for i := range 100 {
		token(t, i%4 == 0)
	}
	// Refusals hand out nothing and are not audited.
	for range 20 {
		if code, _ := do(t, socketClient(f.socket, false), get("http://tokenagent/v1/tokens/nope")); code != 404 {
			t.Fatalf("unknown profile = %d, want 404", code)
		}
	}
	// Callers keep asking while logrotate renames the file and the agent
	// reopens it.
	var wg sync.WaitGroup
	var rotated atomic.Bool
	after := make([]atomic.Int64, 4)
	for w := range 4 {
		wg.Go(func() {
			for {
				if rotated.Load() && after[w].Load() >= 50 {
					return
				}
				token(t, w == 0)
				if rotated.Load() {
					after[w].Add(1)
				}
			}
		})
	}
	<-twoHundred
	if err := os.Rename(audit, audit+".1"); err != nil {
		t.Fatal(err)
	}
	d.Reload() // run in Run's loop: it says when the file is open again
	if !log.waitFor("audit log reopened", 10*time.Second) {
		t.Fatalf("the audit log was not reopened after a reload:\n%s", log.String())
	}
	if _, err := os.Stat(audit); err != nil {
		t.Fatalf("the audit log was not reopened at its path after a reload: %v", err)
	}
	rotated.Store(true)
	wg.Wait()
	stopped = true
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	old, cur := readAudit(t, audit+".1"), readAudit(t, audit)
	if len(old) == 0 || len(cur) == 0 {
		t.Fatalf("old file %d lines, new file %d: want lines in both", len(old), len(cur))
	}
	all := append(old, cur...)
	if n := handed.Load(); int64(len(all)) != n {
		t.Errorf("%d tokens handed out, %d audit lines (%d before the rotation, %d after); want one each", n, len(all), len(old), len(cur))
	}
	seen := map[string]bool{}
	doors := map[string]int{}
	self := uint32(os.Geteuid())
	for _, e := range all {
		key := fmt.Sprint(e.Door, e.Conn)
		if seen[key] {
			t.Errorf("connection %s audited twice", key)
		}
		seen[key] = true
		doors[e.Door]++
		if e.Profile != "p" || e.UID == nil || *e.UID != self || (e.PID != nil && (*e.PID != int32(os.Getpid()) || e.Exe == "")) {
			t.Errorf("audit line %+v: want profile p, uid %d (and on the socket pid %d and an exe)", e, self, os.Getpid())
		}
	}
	if doors["socket"] == 0 || doors["token_endpoint"] == 0 {
		t.Errorf("lines per door = %v; want both doors audited", doors)
	}
	data, _ := os.ReadFile(audit + ".1")
	data2, _ := os.ReadFile(audit)
	tokens.Range(func(k, _ any) bool {
		if tok := k.(string); tok == "" || strings.Contains(string(data)+string(data2), tok) {
			t.Errorf("the audit log holds a token, or a token was empty")
		} else if !strings.Contains(string(data), ipc.Fingerprint(tok)) && !strings.Contains(string(data2), ipc.Fingerprint(tok)) {
			t.Errorf("token with fingerprint %s is in no audit line", ipc.Fingerprint(tok))
		}
		return true
	})
	if fi, err := os.Stat(audit); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}
