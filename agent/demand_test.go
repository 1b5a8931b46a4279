package agent_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc/metrics"
)

// sinkConfig is the store env's config with a file sink on profile p
// only: q and r have none.
func (e *storeEnv) sinkConfig(path string) string {
	return e.config("", "audience = \"api\"\n", "audience = \"api\"\n\n[[profiles.p.files]]\npath = \""+path+"\"\n")
}

// waitFile waits until the file at path holds a token that verifies and
// passes ok, and returns it: the file is read again at each change of a's
// state (a fetch ends after its sinks are written), for 10 s at most.
func waitFile(t *testing.T, a *agent.Agent, e *storeEnv, path, what string, ok func(tok string) bool) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := a.Changed()
		data, err := os.ReadFile(path)
		if tok, cut := strings.CutSuffix(string(data), "\n"); err == nil && cut && tok != "" {
			if _, verr := e.srv.VerifyToken(tok); verr == nil && ok(tok) {
				return tok
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: the file sink %s never held it (last read: %d bytes, %v)", what, path, len(data), err)
		}
	}
}

// TestSinkIsPermanentDemand: a profile with a file sink is fetched at
// start with no caller, its stored token is written at a restart, and it
// is refreshed on schedule with nobody asking; profiles without sinks
// make no IdP request at start (issue 23, item 1).
func TestSinkIsPermanentDemand(t *testing.T) {
	e := newStoreEnv(t)
	path := filepath.Join(t.TempDir(), "p.token")
	any := func(string) bool { return true }

	// (a) A new agent, no caller: the file is written, with one request.
	a, stop := e.mustStart(e.sinkConfig(path))
	first := waitFile(t, a, e, path, "a new agent with no caller", any)
	if got := e.requests(); got != 1 {
		t.Errorf("IdP requests at start = %d, want 1 (p, which has a sink; q and r have none)", got)
	}
	stop()

	// (b) A restart on the store holding p's token: the file is written at
	// start from the store, with no IdP request...
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Minute) // tokens live an hour
	a, _ = e.mustStart(e.sinkConfig(path))
	waitFile(t, a, e, path, "a restart on a stored token", func(tok string) bool { return tok == first })
	if got := e.requests(); got != 1 {
		t.Errorf("IdP requests after the restart = %d, want 1 (the stored token is still good)", got)
	}
	// ...and with no caller at any time, the refresh timer replaces it
	// once refresh time (0.75 of the hour, ±5 %) has passed.
	e.clock.Advance(40 * time.Minute)
	second := waitFile(t, a, e, path, "refresh time passed with no caller", func(tok string) bool { return tok != first })
	if got := e.requests(); got != 2 {
		t.Errorf("IdP requests after refresh time = %d, want 2", got)
	}
	for _, st := range a.Status() {
		if st.Name == "p" && st.Idle {
			t.Error("profile p, which has a file sink, went idle")
		}
	}
	if tok := tokenOf(t, a, "p"); tok != second {
		t.Error("the agent serves a different token from the one in the file sink")
	}
}

// TestNoSinkNoRequestAtStart: profiles without file sinks still cost no
// IdP request until someone asks.
func TestNoSinkNoRequestAtStart(t *testing.T) {
	e := newStoreEnv(t)
	a, _ := e.mustStart(e.config(""))
	e.clock.Advance(time.Hour)
	if got := e.requests(); got != 0 {
		t.Errorf("IdP requests with no caller and no sinks = %d, want 0", got)
	}
	tokenOf(t, a, "q")
	if got := e.requests(); got != 1 {
		t.Errorf("IdP requests after one caller = %d, want 1", got)
	}
}

// statusOf is profile p's status.
func statusOf(t *testing.T, a *agent.Agent) agent.ProfileStatus {
	t.Helper()
	for _, st := range a.Status() {
		if st.Name == "p" {
			return st
		}
	}
	t.Fatal("no profile p in the status")
	return agent.ProfileStatus{}
}

// sinkExpiryMetric is the tokenagent_sink_expiry_timestamp_seconds line
// for profile p in a's /metrics ("" when absent).
func sinkExpiryMetric(a *agent.Agent) string {
	var b bytes.Buffer
	(&metrics.Writer{Collector: a}).Write(&b)
	for line := range strings.Lines(b.String()) {
		if strings.HasPrefix(line, `tokenagent_sink_expiry_timestamp_seconds{profile="p"} `) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// TestSinkStaleShown: while the IdP is down past the token's expiry the
// file sink keeps the last token, whole, and the profile's status and the
// sink expiry metric say the sink is stale; once the IdP answers again
// the file is refreshed with no caller and the status clears (issue 23,
// item 1).
func TestSinkStaleShown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.token")
	h := newHarness(t, fmt.Sprintf("[[profiles.p.files]]\npath = %q\n", path))
	tok := h.mustToken(0)
	st := statusOf(t, h.agent)
	if !st.SinkExpiresAt.Equal(tok.ExpiresAt) || st.SinkStale {
		t.Errorf("fresh sink: sink_expires_at %v (want %v), stale %v (want false)", st.SinkExpiresAt, tok.ExpiresAt, st.SinkStale)
	}
	want := fmt.Sprintf(`tokenagent_sink_expiry_timestamp_seconds{profile="p"} %d`, tok.ExpiresAt.Unix())
	if got := sinkExpiryMetric(h.agent); got != want {
		t.Errorf("metric: %q, want %q", got, want)
	}

	// The IdP goes down; with no caller the clock passes the expiry.
	h.srv.SetFault(idptest.Fault{Status: http.StatusServiceUnavailable})
	h.clock.Advance(2 * time.Hour) // tokens live an hour
	if data, err := os.ReadFile(path); err != nil || string(data) != tok.AccessToken+"\n" {
		t.Fatalf("file sink with the IdP down: %d bytes, %v; want the last token, whole", len(data), err)
	}
	st = statusOf(t, h.agent)
	if !st.SinkStale || !st.SinkExpiresAt.Equal(tok.ExpiresAt) || st.LastError == "" {
		t.Errorf("IdP down past expiry: sink_stale %v (want true), sink_expires_at %v (want %v), last_error %q (want set)", st.SinkStale, st.SinkExpiresAt, tok.ExpiresAt, st.LastError)
	}
	if got := sinkExpiryMetric(h.agent); got != want {
		t.Errorf("metric while stale: %q, want %q", got, want)
	}
	if before := h.requests(); before < 3 {
		t.Errorf("IdP requests while it was down = %d; the timer should have kept retrying", before-1)
	}

	// The IdP answers again: the timer's next attempt refreshes the file.
	h.srv.ClearFault()
	h.clock.Advance(time.Hour) // past any backoff
	data, err := os.ReadFile(path)
	if err != nil || string(data) == tok.AccessToken+"\n" {
		t.Fatalf("file sink after the IdP recovered: %d bytes, %v; want a new token", len(data), err)
	}
	if st = statusOf(t, h.agent); st.SinkStale || !st.SinkExpiresAt.After(h.clock.Now()) {
		t.Errorf("after recovery: sink_stale %v, sink_expires_at %v (now %v)", st.SinkStale, st.SinkExpiresAt, h.clock.Now())
	}
}

// TestReloadAddedSinkIsDemand: a reload that gives a profile a file sink
// writes the file at once with no caller, and arms its refresh.
func TestReloadAddedSinkIsDemand(t *testing.T) {
	e := newStoreEnv(t)
	a, _ := e.mustStart(e.config(""))
	if got := e.requests(); got != 0 {
		t.Fatalf("IdP requests at start with no sinks = %d, want 0", got)
	}
	path := filepath.Join(t.TempDir(), "p.token")
	cfg, err := config.ParseConfig([]byte(e.sinkConfig(path)), "reload.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	first := waitFile(t, a, e, path, "a reload adding a file sink", func(string) bool { return true })
	if got := e.requests(); got != 1 {
		t.Errorf("IdP requests after the reload = %d, want 1 (p only)", got)
	}
	e.clock.Advance(50 * time.Minute) // past refresh time, no caller
	waitFile(t, a, e, path, "refresh time passed after the reload", func(tok string) bool { return tok != first })
}
