package agent

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// recentCallers remembers the last few users a profile admitted, by uid
// and the rule that admitted them (with the latest pid), for root's
// status: which [[allow]] entry let whom in.
type recentCallers struct {
	// newest is the entry seen last: a caller asking again within a
	// second updates nothing and takes no lock (the serving path).
	newest atomic.Pointer[ipc.RecentCaller]
	mu     sync.Mutex
	list   []ipc.RecentCaller // newest first
}

const keptCallers = 8

// saw records that caller was admitted by rule at now.
func (r *recentCallers) saw(caller ipc.Caller, rule string, now time.Time) {
	if n := r.newest.Load(); n != nil && n.UID == caller.UID && n.Rule == rule && now.Sub(n.Last) < time.Second {
		return
	}
	c := ipc.RecentCaller{UID: caller.UID, PID: caller.PID, Rule: rule, Last: now.UTC()}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, old := range r.list {
		if old.UID == c.UID && old.Rule == c.Rule {
			r.list = append(r.list[:i], r.list[i+1:]...)
			break
		}
	}
	if len(r.list) == keptCallers {
		r.list = r.list[:keptCallers-1]
	}
	r.list = append([]ipc.RecentCaller{c}, r.list...)
	r.newest.Store(&c)
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
