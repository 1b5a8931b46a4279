package agent

import "time"

// SetStoreTimings shortens the store writer's stall threshold and check
// interval, for tests that break real disks: the writer's timers then run
// on the system clock, as the disk's faults do, while the engine's clock
// may stay simulated.
func SetStoreTimings(a *Agent, stallAfter, checkEvery time.Duration) {
	if a.persister == nil {
		return // store = "memory"
	}
	a.persister.SetTimings(stallAfter, checkEvery, SystemClock{})
}

// Changed is stateChanged, for tests that wait for the agent's state.
func Changed(a *Agent) <-chan struct{} { return a.stateChanged() }

// WaitSinks waits until the sink write under way for profile, if any, has
// finished.
func WaitSinks(a *Agent, profile string) {
	s := (*a.sources.Load())[profile]
	s.sinkMu.Lock()
	s.sinkMu.Unlock()
}
