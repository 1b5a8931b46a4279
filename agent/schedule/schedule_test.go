package schedule

import (
	"errors"
	"testing"
	"time"
)

var errIdP = errors.New("the IdP failed")

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		name       string
		failures   int
		jitter     float64
		max, after time.Duration
		want       time.Duration
	}{
		{"first, full jitter", 1, 0.999999, time.Minute, 0, 1999998 * time.Microsecond},
		{"never below the minimum", 1, 0, time.Minute, 0, MinBackoff},
		{"doubles per failure", 3, 0.5, time.Minute, 0, 4 * time.Second},
		{"capped at max_backoff", 10, 0.5, 10 * time.Second, 0, 5 * time.Second},
		{"no overflow after many failures", 1000, 0.5, time.Hour, 0, 30 * time.Minute},
		{"Retry-After lengthens", 1, 0.5, time.Minute, 30 * time.Second, 30 * time.Second},
		{"Retry-After never shortens", 5, 0.5, time.Minute, time.Second, 16 * time.Second},
		{"Retry-After capped at max_backoff", 1, 0.5, time.Minute, time.Hour, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Backoff(tc.failures, tc.jitter, tc.max, tc.after); got != tc.want {
				t.Errorf("Backoff(%d, %v, %v, %v) = %v, want %v", tc.failures, tc.jitter, tc.max, tc.after, got, tc.want)
			}
		})
	}
}

func TestHold(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		f    Failures
		now  time.Time
		want time.Duration
	}{
		{"transient: probed after the outage interval", Failures{Err: errIdP, At: t0, NextAttempt: t0.Add(time.Minute)}, t0, OutageProbeInterval},
		{"transient: a short backoff wins", Failures{Err: errIdP, At: t0, NextAttempt: t0.Add(time.Second)}, t0, time.Second},
		{"transient: Retry-After wins over the probe", Failures{Err: errIdP, At: t0, NextAttempt: t0.Add(time.Minute), RetryUntil: t0.Add(20 * time.Second)}, t0, 20 * time.Second},
		{"permanent: the whole backoff", Failures{Err: errIdP, At: t0, NextAttempt: t0.Add(time.Hour), Permanent: true}, t0, time.Hour},
		{"no failure: may ask now", Failures{}, t0, 0},
		{"over: may ask now", Failures{Err: errIdP, At: t0, NextAttempt: t0.Add(time.Second)}, t0.Add(5 * time.Second), -4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Hold(tc.now); got != tc.want {
				t.Errorf("%+v.Hold(%v) = %v, want %v", tc.f, tc.now, got, tc.want)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var f Failures
	if next := f.Transient(errIdP, t0, 0, 0.5, time.Minute); !next.Equal(t0.Add(time.Second)) || f.Count != 1 {
		t.Errorf("first Transient = %v (count %d), want %v (count 1)", next, f.Count, t0.Add(time.Second))
	}
	if next := f.Transient(errIdP, t0, 30*time.Second, 0.5, time.Minute); !next.Equal(t0.Add(30*time.Second)) || !f.RetryUntil.Equal(next) {
		t.Errorf("Transient with Retry-After 30s = %v (RetryUntil %v), want both %v", next, f.RetryUntil, t0.Add(30*time.Second))
	}
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{{t0, true}, {t0.Add(29 * time.Second), true}, {t0.Add(30 * time.Second), false}} {
		if got := f.Holding(tc.at); got != tc.want {
			t.Errorf("after Retry-After 30s: Holding(t0+%v) = %v, want %v", tc.at.Sub(t0), got, tc.want)
		}
	}
	f.Refused(errIdP, t0, t0.Add(time.Hour))
	if !f.Permanent || f.Count != 2 || !f.RetryUntil.IsZero() || f.Hold(t0) != time.Hour {
		t.Errorf("after Refused: %+v, Hold %v; want permanent, count kept at 2, held an hour", f, f.Hold(t0))
	}
	if f.Transient(errIdP, t0, 0, 0, time.Minute); f.Permanent {
		t.Errorf("a transient failure after a refusal is still permanent")
	}
	if (Failures{}).Holding(t0) {
		t.Errorf("no failure: Holding = true")
	}
}

func TestMayForce(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		last, now time.Time
		want      bool
	}{
		{"never forced", time.Time{}, t0, true},
		{"just forced", t0, t0, false},
		{"within the interval", t0, t0.Add(ForcedRefreshInterval - time.Nanosecond), false},
		{"the interval over", t0, t0.Add(ForcedRefreshInterval), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MayForce(tc.last, tc.now); got != tc.want {
				t.Errorf("MayForce(%v, %v) = %v, want %v", tc.last, tc.now, got, tc.want)
			}
		})
	}
}

func TestForcedRefresh(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := [32]byte{1}, [32]byte{2}
	var f ForcedRefresh
	for i, step := range []struct {
		sum  [32]byte
		at   time.Duration
		held bool
		done bool // Done(sum) instead of Decide
		want Verdict
	}{
		{sum: a, at: 0, held: true, want: Held},
		{sum: a, at: 0, want: Start},
		{sum: a, at: time.Second, want: Join},
		{sum: b, at: time.Second, want: Limited},
		{sum: a, at: 2 * time.Second, done: true},
		{sum: a, at: 3 * time.Second, want: Limited},
		{sum: b, at: ForcedRefreshInterval, held: true, want: Held},
		{sum: b, at: ForcedRefreshInterval, want: Start},
	} {
		if step.done {
			f.Done(step.sum)
			continue
		}
		if got := f.Decide(step.sum, t0.Add(step.at), step.held); got != step.want {
			t.Errorf("step %d: Decide(%x, t0+%v, held %v) = %v, want %v", i, step.sum[0], step.at, step.held, got, step.want)
		}
	}
}
