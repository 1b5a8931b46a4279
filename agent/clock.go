package agent

import "time"

// Clock is the agent's source of time, so that refresh and backoff logic can
// be tested on a simulated hour in microseconds (see package clocktest).
//
// It has two readings, as Go's own clock does. Now is the wall clock: a
// suspend moves it forward, an NTP step forward or back. Mono only ever
// counts elapsed time while the machine runs: it stands still during a
// suspend and ignores steps. A token's remaining life is the smaller of
// what the two say, so neither a suspend nor a wall clock stepped back
// makes an expired token look valid.
type Clock interface {
	Now() time.Time
	// Mono is the monotonic reading: time elapsed since some fixed point.
	Mono() time.Duration
	// AfterFunc calls f in its own goroutine after d (on the monotonic
	// clock), unless stop is called first; stop reports whether it
	// prevented the call.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// SystemClock is the real clock.
type SystemClock struct{}

// monoBase anchors SystemClock.Mono; it carries Go's monotonic reading.
var monoBase = time.Now()

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Mono is the monotonic time since the process started.
func (SystemClock) Mono() time.Duration { return time.Since(monoBase) }

// AfterFunc wraps time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// readClock reads both clocks of c at one instant; for the system clock
// that is one time.Now, whose monotonic reading gives Mono.
func readClock(c Clock) (time.Time, time.Duration) {
	if _, ok := c.(SystemClock); ok {
		t := time.Now()
		return t, t.Sub(monoBase)
	}
	return c.Now(), c.Mono()
}
