package agent

import "time"

// SetStoreTimings shortens the store writer's stall threshold and check
// interval, for tests that break real disks.
func SetStoreTimings(a *Agent, stallAfter, checkEvery time.Duration) {
	a.persister.mu.Lock()
	a.persister.stallAfter, a.persister.checkEvery = stallAfter, checkEvery
	a.persister.mu.Unlock()
	a.persister.signal() // the writer picks the new interval up
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
