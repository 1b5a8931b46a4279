package agent_test

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/sink/sinktest"
)

// TestFileSinkUnderLoad: a reader that reads the token file 100,000 times
// while the agent refreshes it again and again never sees a partial,
// empty or expired token; the file has the configured mode.
func TestFileSinkUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zeebe.token")
	h := newHarness(t, fmt.Sprintf("[[profiles.p.files]]\npath = %q\nmode = \"0640\"\n", path))
	h.srv.SetTTL(10 * time.Minute)
	first := h.mustToken(0)
	if data, err := os.ReadFile(path); err != nil || string(data) != first.AccessToken+"\n" {
		t.Fatalf("file sink after the first token: %q, %v", data, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode %04o, want 0640", fi.Mode().Perm())
	}

	// Refreshes run beside the reader: every `every` reads the clock moves
	// past refresh_at, and the agent replaces the file while it is read.
	// -short reads a tenth as often, with the same 50 refreshes.
	reads, every := 100_000, 2000
	if testing.Short() {
		reads, every = 10_000, 200
	}
	tick := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range tick {
			h.clock.Advance(8 * time.Minute) // past refresh_at (0.75 of 10 minutes, ±5 %)
		}
	})
	expiry := map[string]time.Time{}
	for i := range reads {
		if i%every == 0 {
			tick <- struct{}{}
		}
		now := h.clock.Now() // before the read: the file may only get newer meanwhile
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		tok, ok := strings.CutSuffix(string(data), "\n")
		if !ok || tok == "" || strings.Contains(tok, "\n") {
			t.Fatalf("read %d: a partial or empty file: %q", i, data)
		}
		exp, known := expiry[tok]
		if !known {
			claims, err := h.srv.VerifyToken(tok)
			if err != nil {
				t.Fatalf("read %d: the file holds a token that does not verify: %v", i, err)
			}
			e, _ := claims.GetExpirationTime()
			exp, expiry[tok] = e.Time, e.Time
		}
		if !now.Before(exp) {
			t.Fatalf("read %d: the file holds a token that had expired at %v (now %v)", i, exp, now)
		}

	}
	close(tick)
	wg.Wait()
	seen := expiry
	if len(seen) < 3 {
		t.Errorf("the reader saw %d tokens; want the refreshes to have replaced the file several times", len(seen))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries; temporary files were left behind", len(entries))
	}
	if h.agent.Status()[0].Idle {
		t.Error("a profile with a file sink went idle")
	}
}

// TestFileSinkFormatsOwnerAndRemoval: formats, owner and group, a planted
// link refused at start, and the file removed with its profile.
func TestFileSinkFormatsOwnerAndRemoval(t *testing.T) {
	dir := t.TempDir()
	owner := ""
	if os.Geteuid() == 0 {
		owner = "owner = \"daemon\"\ngroup = \"daemon\"\n"
	}
	cfgText := fmt.Sprintf("[[profiles.p.files]]\npath = %q\nformat = \"env\"\n%s\n[[profiles.p.files]]\npath = %q\nformat = \"header\"\n",
		filepath.Join(dir, "p.env"), owner, filepath.Join(dir, "p.header"))
	h := newHarness(t, cfgText)
	tok := h.mustToken(0)
	env, _ := os.ReadFile(filepath.Join(dir, "p.env"))
	header, _ := os.ReadFile(filepath.Join(dir, "p.header"))
	if string(env) != "export ACCESS_TOKEN='"+tok.AccessToken+"'\n" || string(header) != "Authorization: Bearer "+tok.AccessToken+"\n" {
		t.Errorf("env = %q, header = %q", env, header)
	}
	if owner != "" {
		u, _ := user.Lookup("daemon")
		uid, _ := strconv.Atoi(u.Uid)
		fi, _ := os.Stat(filepath.Join(dir, "p.env"))
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != uid {
			t.Errorf("owner %d:%d, want daemon (%d)", st.Uid, st.Gid, uid)
		}
	}
	// The profile goes: so do its files.
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.q]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\n", h.srv.TokenURL, testSecret)), "q.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.agent.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"p.env", "p.header"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s still there after its profile was removed: %v", f, err)
		}
	}
	// A link planted at a sink's path is refused when the agent is built.
	planted := filepath.Join(dir, "planted")
	os.Symlink(filepath.Join(t.TempDir(), "victim"), planted)
	bad, _ := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\n[[profiles.p.files]]\npath = %q\n", h.srv.TokenURL, testSecret, planted)), "planted.toml")
	if _, err := agent.New(bad, agent.Options{}); err == nil || !strings.Contains(err.Error(), planted) {
		t.Errorf("agent.New with a link at the sink's path = %v, want a refusal naming it", err)
	}
}

func TestFileSinkConfigErrors(t *testing.T) {
	base := "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:X\"\n[[profiles.p.files]]\n"
	for _, tc := range []struct{ sink, want string }{
		{`path = "relative/token"`, "absolute"},
		{`path = "/run/t"` + "\nformat = \"yaml\"", "format"},
		{`path = "/run/t"` + "\nmode = \"0666\"", "group or others write"},
		{`path = "/run/t"` + "\nmode = \"rw\"", "octal"},
	} {
		_, err := config.ParseConfig([]byte(base+tc.sink+"\n"), "sink.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "files[0]") {
			t.Errorf("%s: %v, want an error naming files[0] and %q", tc.sink, err, tc.want)
		}
	}
}

// TestReloadDoesNotDeleteThroughLink: the agent's sink directory sits in
// a sticky directory anyone may write; a cleaner of that directory
// removes it, an attacker of another uid puts a link to a folder of
// root's in its place, and a reload drops the sink. The root agent
// deletes nothing through the link (it used to delete root's file).
func TestReloadDoesNotDeleteThroughLink(t *testing.T) {
	s := sinktest.New(t)
	dir := filepath.Join(s.Shared, "tokens")
	if err := os.Mkdir(dir, 0o750); err != nil { // as the daemon makes it at start
		t.Fatal(err)
	}
	h := newHarness(t, fmt.Sprintf("[[profiles.p.files]]\npath = %q\n", filepath.Join(dir, "p")))
	h.mustToken(0)
	if err := os.RemoveAll(dir); err != nil { // systemd-tmpfiles, tmpreaper
		t.Fatal(err)
	}
	s.Attack(t, "ln -s "+s.Victims[0]+" "+dir)
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\n", h.srv.TokenURL, testSecret)), "nosink.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.agent.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	s.VictimsIntact(t)
}

// TestPlantedSinkFileRefused: an attacker of another uid plants a file
// holding its own token at a sink's path while the directory is a shared
// sticky one, as readers would then trust it. The agent refuses to start
// and names the directory; once the directory is tightened, it names
// the planted file and its owner (it used to accept both, and a
// non-root agent, unable to replace another user's file in a sticky
// directory, left the readers with the attacker's token).
func TestPlantedSinkFileRefused(t *testing.T) {
	s := sinktest.New(t)
	dir := filepath.Join(s.Shared, "drop")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, os.ModeSticky|0o777)
	path := filepath.Join(dir, "p")
	s.Attack(t, "echo attacker-token > "+path)
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = %q\n[[profiles.p.files]]\npath = %q\n", testSecret, path)), "planted.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.New(cfg, agent.Options{}); err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("agent.New with a sticky shared sink directory = %v; want a refusal naming %s", err, dir)
	}
	os.Chmod(dir, 0o755) // the operator tightens it; the planted file stays
	if _, err := agent.New(cfg, agent.Options{}); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "uid "+strconv.Itoa(s.UID)) {
		t.Errorf("agent.New with a planted file at the sink = %v; want a refusal naming %s and its owner", err, path)
	}
}
