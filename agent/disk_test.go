package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
	"github.com/tokenagent/tokenagent/store/disktest"
)

// onDisk is a storeEnv whose store lives on a loop file system the test
// may freeze, fill or make read-only.
func onDisk(t *testing.T) (*storeEnv, *disktest.FS) {
	t.Helper()
	fs := disktest.Mount(t, 16)
	e := newStoreEnv(t)
	e.dbPath = filepath.Join(fs.Dir, "tokens.db")
	return e, fs
}

// waitStore waits, on the agent's state changes, until ok says so of its
// store; it fails the test, with the last state, if that does not happen
// within a minute.
func waitStore(t *testing.T, a *agent.Agent, what string, ok func(ipc.StoreHealth) bool) ipc.StoreHealth {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		changed := agent.Changed(a) // before reading: no change is missed
		h := a.StoreHealth()
		if ok(h) {
			return h
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("store never became %s; last state %+v", what, h)
		}
	}
}

func written(h ipc.StoreHealth) bool { return h.State == "ok" && h.PendingWrites == 0 }

// TestFrozenStoreDoesNotHoldCallers: with the store's file system frozen
// (fsfreeze, as a hung disk), callers that need a new token get it as
// soon as the IdP answers; the stalled write is reported, and written
// once the disk thaws. Before, every such caller hung until the thaw.
func TestFrozenStoreDoesNotHoldCallers(t *testing.T) {
	e, fs := onDisk(t)
	a, stop := e.mustStart(e.config(""))
	agent.SetStoreTimings(a, 300*time.Millisecond, time.Hour)
	tokenOf(t, a, "p")
	waitStore(t, a, "written", written)

	fs.Freeze()
	for _, profile := range []string{"q", "r"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tok, err := a.Token(ctx, self, profile, time.Minute)
		cancel()
		if err != nil {
			fs.Thaw()
			t.Fatalf("profile %s with the store's disk frozen: %v", profile, err)
		}
		if left := tok.ExpiresAt.Sub(e.clock.Now()); left < time.Minute {
			t.Errorf("profile %s: served with %v left, asked for a minute", profile, left)
		}
	}
	h := waitStore(t, a, "stalled", func(h ipc.StoreHealth) bool { return h.State == "stalled" })
	if h.Stalls != 1 || h.PendingWrites == 0 {
		t.Errorf("frozen store: %+v; want one stall and writes pending", h)
	}
	fs.Thaw()
	waitStore(t, a, "written after the thaw", written)
	stop()

	// What the frozen disk held up is on it now.
	if recs := storedRecords(t, e); len(recs) != 3 {
		t.Errorf("store after the thaw holds %d records, want 3", len(recs))
	}
}

// TestDeletedStoreFileIsRecreated: a store file deleted under the running
// agent is noticed (at the next write or the next check), logged once,
// and recreated with its lock and the current tokens; before, the agent
// wrote on into the unlinked file and a second agent could take the path.
func TestDeletedStoreFileIsRecreated(t *testing.T) {
	e := newStoreEnv(t)
	a, stop := e.mustStart(e.config(""))
	tokenOf(t, a, "p")
	waitStore(t, a, "written", written)
	if err := os.Remove(e.dbPath); err != nil {
		t.Fatal(err)
	}
	agent.SetStoreTimings(a, 5*time.Second, 50*time.Millisecond)
	waitStore(t, a, "recreated", func(h ipc.StoreHealth) bool {
		_, err := os.Stat(e.dbPath)
		return err == nil && written(h)
	})
	key, _ := os.ReadFile(e.keyPath)
	k, err := store.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := store.Open(e.dbPath, store.Options{Key: k, LockTimeout: 100 * time.Millisecond}); err == nil {
		second.Close()
		t.Error("a second store opened the recreated file: the running agent holds no lock on it")
	}
	tokenOf(t, a, "q")
	waitStore(t, a, "written", written)
	if n := strings.Count(suiteLog.logFor(t).String(), "deleted or replaced"); n != 1 {
		t.Errorf("the deletion was logged %d times, want once", n)
	}
	stop()
	if recs := storedRecords(t, e); len(recs) != 2 {
		t.Errorf("recreated store holds %d records, want p (written again) and q", len(recs))
	}
}

// storedRecords opens e's store and returns its records.
func storedRecords(t *testing.T, e *storeEnv) []store.Record {
	t.Helper()
	cfg, err := secretref.LoadConfig(filepath.Join(e.dir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := agent.OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, _, err := st.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestStoreUnavailableAtStart: a store on a read-only or full disk at
// start leaves the agent serving from memory (said in StoreHealth) while
// it keeps trying; once the disk is writable again, the store opens and
// the tokens served meanwhile are written to it.
func TestStoreUnavailableAtStart(t *testing.T) {
	for _, fault := range []string{"read-only", "full"} {
		t.Run(fault, func(t *testing.T) {
			e, fs := onDisk(t)
			e.dbPath = filepath.Join(fs.Dir, "state", "tokens.db")
			var undo func()
			if fault == "read-only" {
				fs.ReadOnly()
				undo = fs.ReadWrite
			} else {
				undo = fs.Fill()
			}
			path := writeFile(t, filepath.Join(e.dir, "agent.toml"), []byte(e.config("")), 0o600)
			cfg, err := secretref.LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			st, openErr := agent.OpenStore(cfg)
			if st != nil || !agent.StoreUnavailable(openErr) {
				t.Fatalf("OpenStore on a %s disk = %v, %v; want an error StoreUnavailable accepts", fault, st, openErr)
			}
			logger := newTestLogger(t)
			a, err := agent.Open(cfg, agent.Options{Clock: e.clock, Logger: &logger})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			agent.SetStoreTimings(a, 5*time.Second, 50*time.Millisecond)
			tokenOf(t, a, "p")
			if h := a.StoreHealth(); h.State != "unavailable" || h.Error == "" || h.Path != e.dbPath {
				t.Errorf("store health on a %s disk = %+v; want unavailable, with the path and the error", fault, h)
			}
			undo()
			waitStore(t, a, "open and written", written)
			a.Close()
			if recs := storedRecords(t, e); len(recs) != 1 || recs[0].Profile != "p" {
				t.Errorf("store after the disk recovered holds %v, want p's token", recs)
			}
		})
	}
}

// TestStoreFailuresLoggedOncePerChange: a disk that fills up under the
// agent fails its writes (counted in status and metrics each time); that
// is logged once when writes start failing and once when they work again,
// and not again when the disk fills up again within minutes.
func TestStoreFailuresLoggedOncePerChange(t *testing.T) {
	e, fs := onDisk(t)
	a, _ := e.mustStart(e.config(""))
	agent.SetStoreTimings(a, 5*time.Second, 50*time.Millisecond)
	tokenOf(t, a, "p")
	waitStore(t, a, "written", written)
	for round := range 2 {
		free := fs.Fill()
		for _, profile := range []string{"q", "r"} {
			if round == 1 {
				if _, err := a.ReportRejected(context.Background(), self, profile, ipc.TokenSHA256(tokenOf(t, a, profile)), 0); err != nil {
					t.Fatal(err)
				}
				e.clock.Advance(11 * time.Second) // past the forced-refresh limit
			} else {
				tokenOf(t, a, profile)
			}
		}
		waitStore(t, a, "failing", func(h ipc.StoreHealth) bool { return h.State == "failing" && h.PendingWrites > 0 })
		free()
		waitStore(t, a, "written again", written)
	}
	logs := suiteLog.logFor(t).String()
	if n := strings.Count(logs, "token store writes are failing"); n != 1 {
		t.Errorf("failing writes logged %d times over two full-disk spells, want 1", n)
	}
	if n := strings.Count(logs, "token store writes work again"); n != 1 {
		t.Errorf("recovery logged %d times, want 1", n)
	}
	if h := a.StoreHealth(); h.WriteFailures < 2 {
		t.Errorf("write failures counted = %d, want every failed write", h.WriteFailures)
	}
}

// TestFrozenSinkDiskHoldsCallersOnlyBriefly: a file sink on a frozen file
// system costs the callers waiting for a fresh token at most a second
// (sinkWait), not the whole freeze; the file is written after the thaw.
func TestFrozenSinkDiskHoldsCallersOnlyBriefly(t *testing.T) {
	fs := disktest.Mount(t, 16)
	path := filepath.Join(fs.Dir, "p.token")
	h := newHarness(t, fmt.Sprintf("[[profiles.p.files]]\npath = %q\n", path))
	first := h.mustToken(0)
	fs.Freeze()
	h.clock.Advance(11 * time.Second) // past the forced-refresh limit
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type answer struct {
		tok *agent.Token
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		tok, err := h.agent.ReportRejected(ctx, self, "p", ipc.TokenSHA256(first.AccessToken), 0)
		answered <- answer{tok, err}
	}()
	// The sink wait runs on the agent's clock: move it on in small steps
	// until the caller is answered (the wait starts once the new token is
	// in, at a moment the test cannot see from outside).
	var got answer
	for waiting := true; waiting; {
		select {
		case got = <-answered:
			waiting = false
		case <-time.After(10 * time.Millisecond):
			h.clock.Advance(100 * time.Millisecond)
		}
	}
	tok, err := got.tok, got.err
	if err != nil || tok.AccessToken == first.AccessToken {
		fs.Thaw()
		t.Fatalf("new token with the sink's disk frozen: %v (new: %v)", err, err == nil && tok.AccessToken != first.AccessToken)
	}
	fs.Thaw()
	agent.WaitSinks(h.agent, "p")
	if data, _ := os.ReadFile(path); string(data) != tok.AccessToken+"\n" {
		t.Fatalf("the sink after the thaw holds %q, want the new token", data)
	}
}
