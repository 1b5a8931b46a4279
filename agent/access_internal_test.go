package agent

import (
	"testing"

	"github.com/tokenagent/tokenagent/ipc"
)

// TestOverflowUIDIsNobodysIdentity: an agent running as the overflow uid
// (nobody) must not treat every unmapped user of a user namespace, who
// all appear as that uid, as itself.
func TestOverflowUIDIsNobodysIdentity(t *testing.T) {
	nobody := ipc.OverflowUID()
	unlisted := access{}
	listed := access{UIDs: []uint32{nobody}}
	tests := []struct {
		name     string
		acc      access
		caller   ipc.Caller
		agentUID uint32
		want     bool
	}{
		{"agent as nobody, caller nobody, not listed", unlisted, ipc.Caller{UID: nobody, GID: nobody}, nobody, false},
		{"agent as nobody, caller nobody, listed by uid", listed, ipc.Caller{UID: nobody, GID: nobody}, nobody, true},
		{"agent as nobody, caller root", unlisted, ipc.Caller{UID: 0}, nobody, true},
		{"agent as 1000, caller 1000", unlisted, ipc.Caller{UID: 1000, GID: 1000}, 1000, true},
		{"agent as 1000, caller nobody", unlisted, ipc.Caller{UID: nobody, GID: nobody}, 1000, false},
		{"listed group", access{GIDs: []uint32{4242}}, ipc.Caller{UID: 2000, GID: 1, Groups: []uint32{4242}}, 1000, true},
	}
	for _, tt := range tests {
		if got := tt.acc.allows(tt.caller, tt.agentUID); got != tt.want {
			t.Errorf("%s: allows = %v, want %v", tt.name, got, tt.want)
		}
	}
}
