package agent

import (
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// TestRecentCallers: one entry per uid and rule, newest first, with the
// latest pid and time (a second's repeats aside), at most keptCallers.
func TestRecentCallers(t *testing.T) {
	var r recentCallers
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r.saw(ipc.Caller{UID: 1000, PID: 1}, "allow[0]", t0)
	r.saw(ipc.Caller{UID: 1000, PID: 2}, "allow[0]", t0.Add(500*time.Millisecond)) // a repeat within the second
	r.saw(ipc.Caller{UID: 1001, PID: 3}, "allow_groups", t0.Add(2*time.Second))
	r.saw(ipc.Caller{UID: 1000, PID: 4}, "allow[0]", t0.Add(3*time.Second))
	got := r.recent()
	if len(got) != 2 || got[0].UID != 1000 || got[0].PID != 4 || !got[0].Last.Equal(t0.Add(3*time.Second)) || got[1].UID != 1001 || got[1].Rule != "allow_groups" {
		t.Fatalf("recent = %+v; want uid 1000 (pid 4, at +3s) then uid 1001", got)
	}
	for uid := range uint32(20) {
		r.saw(ipc.Caller{UID: 2000 + uid}, "allow_uids", t0.Add(time.Hour))
	}
	if got := r.recent(); len(got) != keptCallers || got[0].UID != 2019 {
		t.Errorf("after 20 more users: %d entries, newest uid %d; want %d, 2019", len(got), got[0].UID, keptCallers)
	}
}
