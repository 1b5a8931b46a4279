package clocktest

import (
	"slices"
	"testing"
	"time"
)

var start = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestAdvanceFiresDueTimersInOrder(t *testing.T) {
	c := New(start)
	var fired []string
	var at []time.Time
	record := func(name string) func() {
		return func() { fired = append(fired, name); at = append(at, c.Now()) }
	}
	c.AfterFunc(3*time.Second, record("3s"))
	c.AfterFunc(time.Second, record("1s-a"))
	c.AfterFunc(time.Second, record("1s-b")) // same due time: in scheduling order
	c.AfterFunc(10*time.Second, record("10s"))
	c.AfterFunc(-time.Second, record("past")) // due at once
	c.Advance(5 * time.Second)
	if want := []string{"past", "1s-a", "1s-b", "3s"}; !slices.Equal(fired, want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
	if want := start.Add(3 * time.Second); !at[3].Equal(want) {
		t.Errorf("Now() inside the 3s timer = %v, want %v", at[3], want)
	}
	if got := c.Now(); !got.Equal(start.Add(5 * time.Second)) {
		t.Errorf("Now() after Advance(5s) = %v", got)
	}
	if c.Pending() != 1 {
		t.Errorf("Pending() = %d, want 1 (the 10s timer)", c.Pending())
	}
}

func TestStopAndTimersScheduledByTimers(t *testing.T) {
	c := New(start)
	ran := 0
	stop := c.AfterFunc(time.Second, func() { ran++ })
	if !stop() || stop() {
		t.Error("stop() = false on an armed timer, or true twice")
	}
	c.AfterFunc(time.Second, func() { c.AfterFunc(time.Second, func() { ran += 10 }) })
	c.Advance(3 * time.Second)
	if ran != 10 {
		t.Errorf("ran = %d, want 10: the stopped timer never runs, the chained one does within the window", ran)
	}
}

// TestJumpMovesOnlyTheWallClock: timers keep their monotonic due time, so
// after a jump back a timer fires while Now reads earlier than planned.
func TestJumpMovesOnlyTheWallClock(t *testing.T) {
	c := New(start)
	var firedAt time.Time
	c.AfterFunc(10*time.Minute, func() { firedAt = c.Now() })
	c.Jump(-5 * time.Minute)
	if got := c.Now(); !got.Equal(start.Add(-5 * time.Minute)) {
		t.Fatalf("Now() after Jump(-5m) = %v", got)
	}
	c.Advance(9 * time.Minute)
	if !firedAt.IsZero() {
		t.Fatal("timer fired before 10 minutes of Advance")
	}
	c.Advance(time.Minute)
	if want := start.Add(5 * time.Minute); !firedAt.Equal(want) {
		t.Errorf("timer fired at wall time %v, want %v (10m monotonic, 5m wall)", firedAt, want)
	}
	c.Jump(time.Hour) // a suspend: no timer fires
	if c.Pending() != 0 || !c.Now().Equal(start.Add(65*time.Minute)) {
		t.Errorf("after Jump(1h): Pending %d, Now %v", c.Pending(), c.Now())
	}
}
