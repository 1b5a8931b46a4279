// Package schedule is the engine's pure timing arithmetic: how long a
// token lives and when it is refreshed, how long to back off after a
// failure, how long a caller with no usable token is held off the IdP and
// how often a refresh may be forced. Values and the time in, times out:
// no goroutines, no clock of its own, so every rule is a table test.
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

// Failures is what a source remembers of its failed fetches since its
// last success; the zero value is none. Its methods take the time and
// return times: the source arms its timer and answers its callers by them.
type Failures struct {
	Err         error     // the last failure; nil when there is none
	Count       int       // consecutive transient failures
	At          time.Time // when the last failed request was answered
	NextAttempt time.Time // no request before this, by the backoff
	RetryUntil  time.Time // the IdP's Retry-After, as a time (zero: none)
	Permanent   bool      // a permanent refusal: held for all of the backoff
}

// Transient records a transient failure answered at now and returns when
// the IdP may be asked again: the backoff after Count failures, for jitter
// in [0, 1), lengthened by the IdP's retryAfter (0: none).
func (f *Failures) Transient(err error, now time.Time, retryAfter time.Duration, jitter float64, maxBackoff time.Duration) time.Time {
	f.Count++
	f.Err, f.At, f.Permanent = err, now, false
	f.RetryUntil = time.Time{}
	if retryAfter > 0 {
		f.RetryUntil = now.Add(retryAfter)
	}
	f.NextAttempt = now.Add(Backoff(f.Count, jitter, maxBackoff, retryAfter))
	return f.NextAttempt
}

// Refused records a permanent refusal answered at now, held until until
// (permanent_backoff on, or when another host's record of it ends). The
// count of transient failures is kept: a refusal is not one of them.
func (f *Failures) Refused(err error, now, until time.Time) {
	f.Err, f.At, f.Permanent = err, now, true
	f.RetryUntil, f.NextAttempt = time.Time{}, until
}

// Holding reports whether, at now, the backoff after a failure still
// keeps the source off the IdP.
func (f Failures) Holding(now time.Time) bool {
	return f.Err != nil && now.Before(f.NextAttempt)
}

// Hold is how long, at now, a caller with no usable token must wait
// before the IdP is asked again (0 or less: it may be asked now). That is
// the backoff, shortened to the outage probe interval: the IdP is probed
// rather than left alone for the whole backoff, unless it said
// Retry-After or refused for good. (While a valid token is served, the
// backoff alone paces the retries.)
func (f Failures) Hold(now time.Time) time.Duration {
	if f.Err == nil {
		return 0
	}
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

// ForcedRefreshInterval is the least time between two refreshes forced by
// rejected-token reports for one profile: a caller that reports every
// token it gets cannot turn the agent into a token pump against the IdP.
const ForcedRefreshInterval = 10 * time.Second

// MayForce reports whether a refresh may be forced at now, the last one
// having started at last (zero: never).
func MayForce(last, now time.Time) bool {
	return last.IsZero() || now.Sub(last) >= ForcedRefreshInterval
}

// ForcedRefresh is a profile's record of the refreshes that rejected-token
// reports forced; the zero value has forced none.
type ForcedRefresh struct {
	Forcing [32]byte  // the SHA-256 of the token whose forced refresh is under way
	Last    time.Time // when the last forced refresh started
}

// Verdict is what a report of the current token does.
type Verdict int

const (
	Join    Verdict = iota // a forced refresh of this token is under way: join it
	Start                  // start one (recorded as started at now)
	Limited                // one started less than ForcedRefreshInterval ago
	Held                   // the backoff after a failure holds the IdP off
)

// Decide answers a report at now of the token with SHA-256 sum; held
// says whether the source's failures hold the IdP off.
func (f *ForcedRefresh) Decide(sum [32]byte, now time.Time, held bool) Verdict {
	switch {
	case f.Forcing == sum:
		return Join
	case !MayForce(f.Last, now):
		return Limited
	case held:
		return Held
	}
	f.Forcing, f.Last = sum, now
	return Start
}

// Done ends the forced refresh of sum: a later report of that token is
// rate-limited, not joined.
func (f *ForcedRefresh) Done(sum [32]byte) {
	if f.Forcing == sum {
		f.Forcing = [32]byte{}
	}
}
