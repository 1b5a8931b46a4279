// Package schedule is the engine's pure timing arithmetic: how long to
// back off after a failure and how long a caller with no usable token is
// held off the IdP. Values in, times out: no goroutines, no clock of its
// own, so every rule is a table test.
package schedule

import "time"

// Backoff after transient failures: full jitter (a uniformly random wait up
// to a ceiling that doubles per consecutive failure, from InitialBackoff to
// the profile's max_backoff), never less than MinBackoff. A Retry-After
// from the IdP lengthens the wait (capped at max_backoff), never shortens it.
const (
	InitialBackoff = 2 * time.Second
	MinBackoff     = time.Second
)

// OutageProbeInterval spaces the IdP requests made for callers who are
// waiting while no valid token exists: however long the backoff has
// grown, such a caller may trigger one request once this long has passed
// since the last one, so service returns within seconds of the IdP's
// recovery. A Retry-After from the IdP still wins, and a permanent error
// is still held for permanent_backoff.
const OutageProbeInterval = 2 * time.Second

// Backoff is the wait after the failures-th consecutive transient failure
// (failures ≥ 1), for jitter in [0, 1), capped at maxBackoff; retryAfter
// is the IdP's Retry-After (0: none).
func Backoff(failures int, jitter float64, maxBackoff, retryAfter time.Duration) time.Duration {
	ceiling := min(InitialBackoff<<min(failures-1, 20), maxBackoff)
	wait := max(time.Duration(jitter*float64(ceiling)), MinBackoff)
	if retryAfter > wait {
		wait = min(retryAfter, maxBackoff)
	}
	return wait
}

// Failure is what a source remembers of its last failed fetch.
type Failure struct {
	At          time.Time // when the failed request was answered
	NextAttempt time.Time // no request before this, by the backoff
	RetryUntil  time.Time // the IdP's Retry-After, as a time (zero: none)
	Permanent   bool      // a permanent IdP error: held for all of the backoff
}

// Hold is how long, at now, a caller with no usable token must wait
// before the IdP is asked again (0 or less: it may be asked now). That is
// the backoff, shortened to the outage probe interval: the IdP is probed
// rather than left alone for the whole backoff, unless it said
// Retry-After or refused for good.
func (f Failure) Hold(now time.Time) time.Duration {
	wait := f.NextAttempt.Sub(now)
	if !f.Permanent {
		probe := f.At.Add(OutageProbeInterval)
		if f.RetryUntil.After(probe) {
			probe = f.RetryUntil
		}
		wait = min(wait, probe.Sub(now))
	}
	return wait
}
