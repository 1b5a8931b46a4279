package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/agent/schedule"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

// lateTimer is how far past its due time a refresh timer may be before a
// caller re-arms it: timers run on the monotonic clock, which stands still
// while the machine sleeps.
const lateTimer = 5 * time.Second

// refreshTimer is the source's one timer: it fires at the token's
// refresh time, or at the next attempt after a failure. Guarded by
// source.mu, except due, which callers read without it to see whether the
// timer needs waking.
type refreshTimer struct {
	stop func() bool
	due  atomic.Int64 // wall clock, Unix ns; 0 when no timer is armed
	idle bool         // stopped because nobody asked for the profile in idle_after
}

// arm (re)starts the timer to call f at at.
func (t *refreshTimer) arm(c Clock, now, at time.Time, f func()) {
	if t.stop != nil {
		t.stop()
	}
	t.idle = false
	t.stop = c.AfterFunc(max(at.Sub(now), 0), f)
	t.due.Store(at.UnixNano())
}

// disarm stops the timer, if one is armed.
func (t *refreshTimer) disarm() {
	if t.stop != nil {
		t.stop()
		t.stop = nil
	}
	t.due.Store(0)
}

// fired notes that the timer ran: none is armed now.
func (t *refreshTimer) fired() {
	t.stop = nil
	t.due.Store(0)
}

// needsWaking reports whether, at now, no timer is armed (idling stopped
// it) or the armed one is more than lateTimer late (a sleeping machine
// delayed it). Safe without source.mu.
func (t *refreshTimer) needsWaking(now time.Time) bool {
	due := t.due.Load()
	return due == 0 || now.UnixNano() > due+int64(lateTimer)
}

// fetchIdP asks the IdP for a token and installs it.
func (s *source) fetchIdP(ctx context.Context) (*cached, error) {
	t := s.prof.timing
	ctx, cancel := context.WithTimeout(ctx, t.FetchTimeout.Duration)
	defer cancel()
	sent, sentMono := readClock(s.agent.clock)
	sent = sent.Round(0) // wall time only: it is stored and compared as such
	// Latency is measured on the real clock: it is reported, never
	// acted on, and a test's clock stands still while the IdP answers.
	start := time.Now()
	resp, err := s.prof.client.Fetch(ctx)
	latency := time.Since(start)
	s.stats.request(err, latency)
	// Whatever the answer: the IdP bills and limits requests, not tokens.
	s.agent.countRequest(s.prof.name, sent)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errSourceClosed
	}
	now := s.agent.clock.Now()
	if err != nil {
		s.failedLocked(now, err, latency)
		wait := s.holdLocked(now)
		s.mu.Unlock()
		// The callers learn when it is worth asking again (Retry-After).
		return nil, &holdError{wait: wait, err: err, fresh: true}
	}
	policy := policyOf(t)
	ttl, why, skew := policy.Lifetime(resp.AccessToken, resp.ExpiresIn, sent)
	c := &cached{
		Token: Token{
			AccessToken: resp.AccessToken,
			TokenType:   resp.TokenType,
			Scope:       resp.Scope,
			ExpiresAt:   sent.Add(ttl),
			ObtainedAt:  sent,
		},
		refreshAt:  policy.RefreshTime(sent, ttl, s.agent.rand()),
		sum:        sha256.Sum256([]byte(resp.AccessToken)),
		monoExpiry: sentMono + ttl,
	}
	c.monoRefresh = sentMono + c.refreshAt.Sub(sent)
	s.cur.Store(c)
	s.failures = schedule.Failures{}
	s.armLocked(now, c.refreshAt)
	s.mu.Unlock()
	s.stats.mint(now)
	s.noteSkew(skew)
	// Noted for the store's writer, which never holds up the waiters:
	// a hung disk costs restarts their stored token, not callers theirs.
	s.agent.persist(s.record(c))
	s.writeSinksAfter(c)
	s.log.Info().
		Str("token_sha256", ipc.Fingerprint(resp.AccessToken)).
		Dur("ttl", ttl).Str("ttl_from", why).
		Time("expires_at", c.ExpiresAt).Time("refresh_at", c.refreshAt).
		Dur("latency", latency).
		Msg("token fetched")
	return c, nil
}

// record is c as the store keeps it.
func (s *source) record(c *cached) store.Record {
	return store.Record{
		Profile: s.prof.name, Fingerprint: s.prof.fingerprint,
		AccessToken: c.AccessToken, TokenType: c.TokenType, Scope: c.Scope,
		ExpiresAt: c.ExpiresAt, ObtainedAt: c.ObtainedAt,
	}
}

// seed installs a token loaded from the store and writes it to the
// profile's file sinks. No timer is armed here: for a profile without
// sinks the first request arms it (see token), so profiles nobody uses
// after a restart cost no IdP requests; a profile with sinks has it armed
// by demand, which Open calls once the store is adopted.
func (s *source) seed(r store.Record) {
	now, mono := readClock(s.agent.clock)
	c := s.kept(Token{AccessToken: r.AccessToken, TokenType: r.TokenType, Scope: r.Scope, ExpiresAt: r.ExpiresAt, ObtainedAt: r.ObtainedAt}, now, mono)
	c.fromStore = true
	s.cur.Store(c)
	s.writeSinks(c.Token)
}

// demand keeps a profile with file sinks current with no caller: a
// script reading the file never asks the agent. With a usable token it
// arms the refresh timer (if none is armed); without one it starts a
// fetch in the background, through the same singleflight callers join,
// on the agent's context. A failed fetch arms the timer for the next
// attempt (the normal backoff), and a profile with sinks never idles, so
// the timer keeps retrying. Profiles without sinks are left alone.
func (s *source) demand() {
	if len(s.prof.sinks) == 0 {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	now, mono := readClock(s.agent.clock)
	if c := s.cur.Load(); c != nil && c.left(now, mono) >= s.prof.timing.MinValid.Duration {
		if s.timer.due.Load() == 0 {
			s.armLocked(now, now.Add(c.untilDue(now, mono)))
		}
		s.mu.Unlock()
		return
	}
	if s.holdLocked(now) > 0 {
		if s.timer.due.Load() == 0 {
			s.armLocked(now, s.failures.NextAttempt)
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.log.Info().Int("file_sinks", len(s.prof.sinks)).Msg("profile has file sinks and no usable token; fetching one at start")
	go s.sf.Do(fetchKey, s.fetch)
}

// kept is a token that was fetched before or elsewhere (the store,
// another host) as the source keeps it. Its times are wall times: the
// monotonic ones start from them, as the clocks read now and mono.
func (s *source) kept(tok Token, now time.Time, mono time.Duration) *cached {
	tok.ExpiresAt, tok.ObtainedAt = tok.ExpiresAt.Round(0), tok.ObtainedAt.Round(0)
	c := &cached{
		Token:     tok,
		refreshAt: policyOf(s.prof.timing).RefreshTime(tok.ObtainedAt, tok.ExpiresAt.Sub(tok.ObtainedAt), s.agent.rand()),
		sum:       sha256.Sum256([]byte(tok.AccessToken)),
	}
	c.monoExpiry, c.monoRefresh = mono+c.ExpiresAt.Sub(now), mono+c.refreshAt.Sub(now)
	return c
}

// failedLocked records a failed fetch and schedules the next attempt.
func (s *source) failedLocked(now time.Time, err error, latency time.Duration) {
	t := s.prof.timing
	var ie *idp.Error
	isIdP := errors.As(err, &ie)
	var next time.Time
	if isIdP && !ie.Transient {
		next = now.Add(t.PermanentBackoff.Duration)
		s.failures.Refused(err, now, next)
	} else {
		var retryAfter time.Duration
		if isIdP {
			retryAfter = ie.RetryAfter
		}
		next = s.failures.Transient(err, now, retryAfter, s.agent.rand(), t.MaxBackoff.Duration)
	}
	s.armLocked(now, next)

	ev := s.log.Warn().Err(err).Dur("retry_in", next.Sub(now)).Dur("latency", latency).Int("failures", s.failures.Count)
	if isIdP {
		ev = ev.Int("status", ie.StatusCode).Str("idp_error", ie.Code).Bool("transient", ie.Transient)
	}
	if c := s.cur.Load(); c != nil && c.ExpiresAt.After(now) {
		ev = ev.Time("serving_until", c.ExpiresAt)
	}
	ev.Msg("token fetch failed")
}

// armLocked (re)starts the refresh timer for at.
func (s *source) armLocked(now, at time.Time) {
	s.timer.arm(s.agent.clock, now, at, s.onTimer)
}

// wake re-arms a timer that idling stopped or that a sleeping machine
// delayed; a caller's request found it so.
func (s *source) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := s.agent.clock.Now()
	if !s.timer.needsWaking(now) {
		return // another caller did it
	}
	at := s.failures.NextAttempt
	if c := s.cur.Load(); c != nil {
		if refresh := now.Add(c.untilDue(now, s.agent.clock.Mono())); refresh.After(at) {
			at = refresh
		}
	}
	if s.timer.idle {
		s.log.Info().Msg("profile in use again; background refresh resumed")
	}
	s.armLocked(now, at)
}

// onTimer refreshes proactively, unless the profile went idle.
func (s *source) onTimer() {
	s.mu.Lock()
	s.timer.fired()
	if s.closed {
		s.mu.Unlock()
		return
	}
	now := s.agent.clock.Now()
	// A profile with file sinks is never idle: a script may read the file
	// at any time without the agent seeing it.
	if unused := now.Sub(time.Unix(0, s.lastUsed.Load())); unused >= s.prof.timing.IdleAfter.Duration && len(s.prof.sinks) == 0 {
		s.timer.idle = true
		s.log.Info().Dur("unused_for", unused.Round(time.Second)).Msg("profile idle; background refresh paused until the next request")
		s.mu.Unlock()
		return
	}
	if now.Before(s.failures.NextAttempt) {
		s.armLocked(now, s.failures.NextAttempt)
		s.mu.Unlock()
		return
	}
	if c := s.cur.Load(); c != nil && !c.due(now, s.agent.clock.Mono()) {
		// Neither clock says it is due (a timer armed by the wall clock,
		// which was then stepped back): re-arm for the sooner of the two.
		s.armLocked(now, now.Add(c.untilDue(now, s.agent.clock.Mono())))
		s.mu.Unlock()
		return
	}
	if c := s.cur.Load(); c != nil && c.left(now, s.agent.clock.Mono()) > 0 {
		if until, paused := s.agent.budgetPause(s.prof.name, now); paused {
			// budget_enforce, and the budget is spent: no proactive
			// refresh until the period ends. The token held is served
			// until it expires; then a caller's request asks the IdP, or,
			// for a profile with file sinks (nobody asks), the timer does.
			if len(s.prof.sinks) > 0 && c.ExpiresAt.Before(until) {
				until = c.ExpiresAt
			}
			s.armLocked(now, until)
			s.mu.Unlock()
			s.log.Debug().Time("until", until).Msg("IdP request budget spent: proactive refresh paused")
			return
		}
	}
	s.mu.Unlock()
	if _, _, shared := s.sf.Do(fetchKey, s.fetch); shared {
		// The timer fired while the fetch that armed it was still finishing
		// (writing sinks, logging), and joined it: that fetch's token may
		// be the one now due, and no timer is armed for it. wake arms one
		// for the token now held (or the next attempt); the fetch has
		// ended, so the next firing starts a new one.
		s.wake()
	}
}

// releaseHold forgets a held failure, permanent or transient: the next
// caller asks the IdP at once.
func (s *source) releaseHold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A refusal the fleet shared before the reload is forgotten too: the
	// operator may have fixed it at the IdP.
	if s.coord != nil {
		s.coord.Forget()
	}
	if s.failures.Err == nil {
		return
	}
	s.log.Info().Msg("configuration reloaded: the held IdP failure is forgotten; the IdP is asked again on the next request")
	s.failures = schedule.Failures{}
	if c := s.cur.Load(); c != nil && !s.closed {
		now := s.agent.clock.Now()
		s.armLocked(now, now.Add(c.untilDue(now, s.agent.clock.Mono())))
	}
}

// policyOf is a profile's timing as package schedule takes it.
func policyOf(t config.Timing) schedule.Policy {
	return schedule.Policy{
		RefreshAt: t.RefreshAt, MinValid: t.MinValid.Duration,
		DefaultTTL: t.DefaultTTL.Duration, MaxTTL: t.MaxTTL.Duration,
		MaxBackoff: t.MaxBackoff.Duration, PermanentBackoff: t.PermanentBackoff.Duration,
	}
}
