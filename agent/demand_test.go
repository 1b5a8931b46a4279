package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sinkConfig is the store env's config with a file sink on profile p
// only: q and r have none.
func (e *storeEnv) sinkConfig(path string) string {
	return e.config("", "audience = \"api\"\n", "audience = \"api\"\n\n[[profiles.p.files]]\npath = \""+path+"\"\n")
}

// waitFile waits (real time, bounded) until the file at path holds a
// token that verifies and passes ok, and returns it.
func waitFile(t *testing.T, e *storeEnv, path, what string, ok func(tok string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if tok, cut := strings.CutSuffix(string(data), "\n"); err == nil && cut && tok != "" {
			if _, verr := e.srv.VerifyToken(tok); verr == nil && ok(tok) {
				return tok
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the file sink %s never held it (last read: %d bytes, %v)", what, path, len(data), err)
		}
		time.Sleep(5 * time.Millisecond)
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
	_, stop := e.mustStart(e.sinkConfig(path))
	first := waitFile(t, e, path, "a new agent with no caller", any)
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
	a, _ := e.mustStart(e.sinkConfig(path))
	waitFile(t, e, path, "a restart on a stored token", func(tok string) bool { return tok == first })
	if got := e.requests(); got != 1 {
		t.Errorf("IdP requests after the restart = %d, want 1 (the stored token is still good)", got)
	}
	// ...and with no caller at any time, the refresh timer replaces it
	// once refresh time (0.75 of the hour, ±5 %) has passed.
	e.clock.Advance(40 * time.Minute)
	second := waitFile(t, e, path, "refresh time passed with no caller", func(tok string) bool { return tok != first })
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
