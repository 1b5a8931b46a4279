package agent

import (
	"sync"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// recentCallers remembers the last few distinct callers a profile
// admitted and the rule that admitted each, for root's status: which
// [[allow]] entry let which process in.
type recentCallers struct {
	mu   sync.Mutex
	list []ipc.RecentCaller // newest first
}

const keptCallers = 8

// saw records that caller was admitted by rule at now.
func (r *recentCallers) saw(caller ipc.Caller, rule string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := ipc.RecentCaller{UID: caller.UID, PID: caller.PID, Rule: rule, Last: now.UTC()}
	if len(r.list) > 0 && r.list[0].UID == c.UID && r.list[0].PID == c.PID && r.list[0].Rule == c.Rule {
		r.list[0].Last = c.Last // the common case: one caller asking again
		return
	}
	for i, old := range r.list {
		if old.UID == c.UID && old.PID == c.PID && old.Rule == c.Rule {
			r.list = append(r.list[:i], r.list[i+1:]...)
			break
		}
	}
	if len(r.list) == keptCallers {
		r.list = r.list[:keptCallers-1]
	}
	r.list = append([]ipc.RecentCaller{c}, r.list...)
}

// recent is a copy of the list, newest first.
func (r *recentCallers) recent() []ipc.RecentCaller {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.list) == 0 {
		return nil
	}
	return append([]ipc.RecentCaller(nil), r.list...)
}
