package daemon

// The process's memory: memory_limit as the runtime's soft limit, and
// memory a connection storm left behind returned to the system once it
// has passed.

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/config"
)

// releaseEvery is how often the daemon looks for memory to return to
// the system, and releaseOver how far the heap may have grown past what
// it held after the last return before a quiet agent returns it. A storm
// of connections grows the heap by buffers and stacks per connection;
// the runtime's own scavenger would keep most of it for minutes (it
// sizes what it keeps to the heap goal of the storm), though a quiet
// agent needs a few MiB.
const (
	releaseEvery = 10 * time.Second
	releaseOver  = 8 << 20
)

// applyMemoryLimit sets the runtime's soft memory limit from memory_limit,
// unless GOMEMLIMIT in the environment set one (it wins).
func applyMemoryLimit(cfg *config.Config, log zerolog.Logger) {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		log.Debug().Str("GOMEMLIMIT", env).Msg("memory limit from the environment; memory_limit not applied")
		return
	}
	limit := cfg.MemoryLimit.Limit()
	if limit == 0 {
		limit = math.MaxInt64 // the runtime's "no limit"
	}
	debug.SetMemoryLimit(limit)
}

// releaseMemory returns memory a burst left behind to the system, until
// stop is closed: every releaseEvery, if no collection ran since the last
// look (the agent is quiet) and the heap holds more than releaseOver
// beyond what it held after the last return, it collects and returns
// every free page (debug.FreeOSMemory). A quiet agent's heap stays near
// that mark, so this runs once after a burst, not every time.
func releaseMemory(stop <-chan struct{}) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
	}
	read := func() (cycles, held uint64) {
		metrics.Read(samples)
		for i, s := range samples {
			if s.Value.Kind() != metrics.KindUint64 {
				continue
			}
			if i == 0 {
				cycles = s.Value.Uint64()
			} else {
				held += s.Value.Uint64()
			}
		}
		return cycles, held
	}
	lastCycles, _ := read()
	var mark uint64 // the heap held after the last return; 0: none yet
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		cycles, held := read()
		quiet := cycles == lastCycles
		lastCycles = cycles
		if !quiet || (mark != 0 && held <= mark+releaseOver) {
			continue
		}
		debug.FreeOSMemory()
		lastCycles, mark = read()
	}
}
