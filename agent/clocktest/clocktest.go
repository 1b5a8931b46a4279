// Package clocktest is a simulated clock for tests of time-driven code:
// time moves only when the test says so, and timers fire, in order, on the
// test's goroutine. Like Go's own clock it has two readings: timers run on
// a monotonic clock that only Advance moves, while Now is the wall clock,
// which Jump also moves (a suspend, an NTP step) — so that a test can make
// a timer fire "early" or "late" by the wall clock, as real ones do.
package clocktest

import (
	"slices"
	"sync"
	"time"
)

// Clock is a fake clock. Its zero value is not usable; call New.
type Clock struct {
	mu     sync.Mutex
	mono   time.Duration // monotonic time since New
	start  time.Time     // wall time at New, plus every Jump
	seq    int
	timers []*timer
}

type timer struct {
	due time.Duration // on the monotonic clock
	seq int
	f   func()
}

// New returns a clock reading start.
func New(start time.Time) *Clock { return &Clock{start: start} }

// Now returns the simulated wall-clock time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start.Add(c.mono)
}

// Mono returns the simulated monotonic reading: only Advance moves it.
func (c *Clock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// AfterFunc schedules f to run when the clock is advanced d or more.
func (c *Clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &timer{due: c.mono + max(d, 0), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, t)
		if i < 0 {
			return false
		}
		c.timers = slices.Delete(c.timers, i, i+1)
		return true
	}
}

// Advance moves both clocks forward by d (d < 0 is treated as 0). Each
// timer that falls due runs synchronously, with the clock set to its due
// time, in due order; timers that those callbacks schedule within the
// window run too.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.mono + max(d, 0)
	for {
		t := c.nextDue(end)
		if t == nil {
			break
		}
		c.mono = max(c.mono, t.due)
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.mono = end
	c.mu.Unlock()
}

// Jump moves the wall clock forward or back by d without moving the
// monotonic clock or firing timers, as a suspend/resume or an NTP step
// does to time.Now: a timer due in 10 minutes still fires 10 minutes of
// Advance later, when Now reads 10 minutes + d on.
func (c *Clock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start = c.start.Add(d)
}

// Pending is how many timers are armed.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// nextDue removes and returns the earliest timer due by end; c.mu is held.
func (c *Clock) nextDue(end time.Duration) *timer {
	best := -1
	for i, t := range c.timers {
		if t.due > end {
			continue
		}
		if best < 0 || t.due < c.timers[best].due || (t.due == c.timers[best].due && t.seq < c.timers[best].seq) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	t := c.timers[best]
	c.timers = slices.Delete(c.timers, best, best+1)
	return t
}
