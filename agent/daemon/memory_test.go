package daemon_test

import (
	"runtime/debug"
	"testing"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/daemon"
)

// TestMemoryLimitAppliedAndReloaded: a daemon that manages its process's
// memory sets memory_limit (default 64 MiB) as the runtime's soft limit
// at start, and a reload applies a new one.
func TestMemoryLimitAppliedAndReloaded(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "") // the environment's would win
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	f := newFixture(t, "")
	d, buf := f.loggedDaemon(t, daemon.Options{ManageMemory: true})
	_, stop := serve(t, d)
	defer stop()
	if got := debug.SetMemoryLimit(-1); got != config.DefaultMemoryLimit {
		t.Errorf("memory limit after start: %d, want memory_limit's default %d", got, config.DefaultMemoryLimit)
	}
	f.write(t, `memory_limit = "96MiB"`, "p")
	reload(t, d, buf)
	if got := debug.SetMemoryLimit(-1); got != 96<<20 {
		t.Errorf("memory limit after a reload to 96MiB: %d, want %d\n%s", got, 96<<20, buf.String())
	}
}
