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
