package agent_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/internal/disktest"
	"github.com/tokenagent/tokenagent/ipc"
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

// waitStore polls the agent's store state until ok says so; it fails the
// test, with the last state, if that does not happen within a minute.
func waitStore(t *testing.T, a *agent.Agent, what string, ok func(ipc.StoreHealth) bool) ipc.StoreHealth {
	t.Helper()
	var h ipc.StoreHealth
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if h = a.StoreHealth(); ok(h) {
			return h
		}
	}
	t.Fatalf("store never became %s; last state %+v", what, h)
	return h
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
	cfg, err := agent.LoadConfig(filepath.Join(e.dir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := agent.OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, _, err := st.LoadAll()
	if err != nil || len(recs) != 3 {
		t.Errorf("store after the thaw holds %d records (%v), want 3", len(recs), err)
	}
}
