package schedule

import (
	"testing"
	"time"
)

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
		f    Failure
		now  time.Time
		want time.Duration
	}{
		{"transient: probed after the outage interval", Failure{At: t0, NextAttempt: t0.Add(time.Minute)}, t0, OutageProbeInterval},
		{"transient: a short backoff wins", Failure{At: t0, NextAttempt: t0.Add(time.Second)}, t0, time.Second},
		{"transient: Retry-After wins over the probe", Failure{At: t0, NextAttempt: t0.Add(time.Minute), RetryUntil: t0.Add(20 * time.Second)}, t0, 20 * time.Second},
		{"permanent: the whole backoff", Failure{At: t0, NextAttempt: t0.Add(time.Hour), Permanent: true}, t0, time.Hour},
		{"over: may ask now", Failure{At: t0, NextAttempt: t0.Add(time.Second)}, t0.Add(5 * time.Second), -4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Hold(tc.now); got != tc.want {
				t.Errorf("%+v.Hold(%v) = %v, want %v", tc.f, tc.now, got, tc.want)
			}
		})
	}
}
