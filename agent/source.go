package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/agent/schedule"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

// lateTimer is how far past its due time a refresh timer may be before a
// caller re-arms it: timers run on the monotonic clock, which stands still
// while the machine sleeps.
const lateTimer = 5 * time.Second

const fetchKey = "fetch"

// Token is an access token as handed out. It is shared between callers:
// do not modify it.
type Token struct {
	AccessToken string
	TokenType   string
	Scope       string
	// ExpiresAt is when the token stops being valid (wall clock).
	ExpiresAt time.Time
	// ObtainedAt is when the request that returned it was sent.
	ObtainedAt time.Time
}

// holdError wraps a failed fetch with how long the source now waits
// before asking the IdP again: returned for the fetch itself (fresh) and,
// without asking the IdP, to callers while the wait lasts.
type holdError struct {
	wait  time.Duration
	err   error
	fresh bool // the failure just happened (not a held earlier one)
}

func (e *holdError) Error() string {
	if e.fresh {
		return e.err.Error()
	}
	return fmt.Sprintf("not asking the IdP again for %v after: %v", e.wait.Round(time.Second), e.err)
}

func (e *holdError) Unwrap() error { return e.err }

// cached is a token with what the source needs to manage it.
type cached struct {
	Token
	refreshAt time.Time
	sum       [32]byte // SHA-256 of AccessToken, for rejected-token reports
	// The expiry and refresh time on the monotonic clock (Clock.Mono):
	// the wall clock alone would make a token look valid for longer after
	// an NTP step back, the monotonic one alone after a suspend.
	monoExpiry, monoRefresh time.Duration
	fromStore               bool   // loaded from the store, not fetched by this agent
	fromFleet               bool   // another host's agent fetched it
	mintedBy                string // that host's name; "" for this host
}

// left is how long the token stays valid: the lesser of what the wall
// clock and the monotonic clock say.
func (c *cached) left(now time.Time, mono time.Duration) time.Duration {
	return min(c.ExpiresAt.Sub(now), c.monoExpiry-mono)
}

// due reports whether the token should be refreshed by either clock.
func (c *cached) due(now time.Time, mono time.Duration) bool {
	return !now.Before(c.refreshAt) || mono >= c.monoRefresh
}

// untilDue is how long until the token is due for refresh by either clock.
func (c *cached) untilDue(now time.Time, mono time.Duration) time.Duration {
	return min(c.refreshAt.Sub(now), c.monoRefresh-mono)
}

// serve is the token as handed out: when the monotonic clock says it
// expires sooner than the wall clock does (the wall clock was stepped
// back), a copy whose ExpiresAt says so.
func (c *cached) serve(now time.Time, mono time.Duration) *Token {
	if byMono := c.monoExpiry - mono; c.ExpiresAt.Sub(now)-byMono > time.Second {
		t := c.Token
		t.ExpiresAt = now.Add(byMono)
		return &t
	}
	return &c.Token
}

// source keeps one profile's token: it serves it, fetches it once per
// burst, refreshes it before expiry and backs off when the IdP fails.
type source struct {
	agent *Agent
	prof  *profile
	log   zerolog.Logger

	cur      atomic.Pointer[cached]
	sinkNext atomic.Pointer[cached] // the token the sink writer has yet to write
	sinkMu   sync.Mutex             // one sink write at a time (see writeSinksAfter)
	lastUsed atomic.Int64           // wall clock, Unix ns
	timerDue atomic.Int64           // wall clock, Unix ns; 0 when no timer is armed
	served   atomic.Uint64          // tokens handed out over the socket
	sf       singleflight.Group

	mu          sync.Mutex
	stopTimer   func() bool
	failures    int               // consecutive transient failures
	nextAttempt time.Time         // no upstream request before this, after a failure
	lastErr     error             // most recent fetch error; nil after a success
	lastFailure time.Time         // when the last failed request was answered
	retryUntil  time.Time         // the IdP's Retry-After, as a time
	permanent   bool              // lastErr is a permanent IdP error
	forcing     [32]byte          // the token whose forced refresh is under way
	lastForced  time.Time         // when the last forced refresh started
	requests    int               // upstream requests made
	results     map[string]uint64 // upstream requests by result ("ok" or an error class)
	latency     Histogram
	minted      uint64 // successful fetches
	coalesced   uint64 // callers who waited on a fetch another caller started
	lastRefresh time.Time
	skew        time.Duration // the JWT's exp − (sent + expires_in), last seen
	skewLogged  bool
	idle        bool
	closed      bool

	// coord shares the profile's tokens with other hosts; nil when it
	// takes no part in a fleet.
	coord *fleet.Coordinator
}

func newSource(a *Agent, p *profile) *source {
	s := &source{agent: a, prof: p, log: a.log.With().Str("profile", p.name).Logger()}
	s.coord = newCoordinator(s)
	s.lastUsed.Store(a.clock.Now().UnixNano())
	return s
}

// token returns a token valid for at least minValid.
func (s *source) token(ctx context.Context, minValid time.Duration) (*Token, error) {
	now, mono := readClock(s.agent.clock)
	s.lastUsed.Store(now.UnixNano())
	if c := s.cur.Load(); c != nil && c.left(now, mono) >= minValid {
		if due := s.timerDue.Load(); due == 0 || now.UnixNano() > due+int64(lateTimer) {
			s.wake()
		}
		return c.serve(now, mono), nil
	}
	return s.fetchWait(ctx, minValid)
}

// fetchWait joins or starts the one fetch in flight and waits for it, or
// for ctx. The fetch itself runs on the agent's context: a caller that
// gives up does not cancel it for the others.
func (s *source) fetchWait(ctx context.Context, minValid time.Duration) (*Token, error) {
	s.mu.Lock()
	now, mono := readClock(s.agent.clock)
	c := s.cur.Load()
	if c != nil {
		if c.left(now, mono) >= minValid {
			s.mu.Unlock()
			return c.serve(now, mono), nil
		}
		if life := c.ExpiresAt.Sub(c.ObtainedAt); life < minValid {
			s.mu.Unlock()
			return nil, ipc.Errorf(ipc.ErrMinValid, fmt.Sprintf("profile %q: the IdP issues tokens valid for %v; asked for %v", s.prof.name, life.Round(time.Second), minValid))
		}
	}
	if wait := s.holdLocked(now); wait > 0 {
		err := &holdError{wait: wait, err: s.lastErr}
		s.mu.Unlock()
		return nil, err
	}
	ch := s.sf.DoChan(fetchKey, s.fetch)
	s.mu.Unlock()

	select {
	case r := <-ch:
		if r.Shared {
			s.mu.Lock()
			s.coalesced++
			s.mu.Unlock()
		}
		if r.Err != nil {
			return nil, r.Err
		}
		return s.fresh(r.Val.(*cached), minValid)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fresh hands out a token a fetch just returned, if it has minValid left.
func (s *source) fresh(c *cached, minValid time.Duration) (*Token, error) {
	now, mono := readClock(s.agent.clock)
	if left := c.left(now, mono); left < minValid {
		return nil, ipc.Errorf(ipc.ErrMinValid, fmt.Sprintf("profile %q: the IdP issued a token valid for %v; asked for %v", s.prof.name, left.Round(time.Second), minValid))
	}
	return c.serve(now, mono), nil
}

// holdLocked is how long a caller with no usable token must wait before
// the IdP is asked again (0 or less: it may be asked now). That is the
// backoff, shortened to the outage probe interval: the IdP is probed
// rather than left alone for the whole backoff, unless it said
// Retry-After or refused for good.
func (s *source) holdLocked(now time.Time) time.Duration {
	if s.lastErr == nil {
		return 0
	}
	// While a valid token is served, the backoff alone paces the retries
	// (the timer); this is for callers with none.
	return schedule.Failure{At: s.lastFailure, NextAttempt: s.nextAttempt, RetryUntil: s.retryUntil, Permanent: s.permanent}.Hold(now)
}

// fetch asks the IdP for a token; singleflight runs at most one at a time.
func (s *source) fetch() (any, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	// A source a reload replaced sends its callers on to the successor
	// without asking the IdP itself.
	if closed || !s.agent.beginFetch() {
		return nil, errSourceClosed
	}
	defer s.agent.endFetch()
	defer s.agent.notify()
	// With a fleet, a token another host fetched is used as it is; else
	// this host fetches holding the fingerprint's lock, and shares what it
	// gets (see fleet.go). etcd trouble leaves it fetching for itself.
	if s.coord != nil {
		return s.fetchShared()
	}
	return s.fetchIdP(s.agent.ctx)
}

// fetchIdP asks the IdP for a token and installs it.
func (s *source) fetchIdP(ctx context.Context) (*cached, error) {
	t := s.prof.timing
	ctx, cancel := context.WithTimeout(ctx, t.FetchTimeout.Duration)
	defer cancel()
	sent, sentMono := readClock(s.agent.clock)
	sent = sent.Round(0) // wall time only: it is stored and compared as such
	start := time.Now()
	resp, err := s.prof.client.Fetch(ctx)
	latency := time.Since(start)

	s.mu.Lock()
	s.requests++
	s.latency.observe(latency)
	if s.results == nil {
		s.results = map[string]uint64{}
	}
	s.results[resultClass(err)]++
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
	ttl, why, skew := lifetime(resp, sent, t)
	s.noteSkewLocked(skew)
	c := &cached{
		Token: Token{
			AccessToken: resp.AccessToken,
			TokenType:   resp.TokenType,
			Scope:       resp.Scope,
			ExpiresAt:   sent.Add(ttl),
			ObtainedAt:  sent,
		},
		refreshAt:  refreshTime(sent, ttl, t, s.agent.rand()),
		sum:        sha256.Sum256([]byte(resp.AccessToken)),
		monoExpiry: sentMono + ttl,
	}
	c.monoRefresh = sentMono + c.refreshAt.Sub(sent)
	s.cur.Store(c)
	s.minted++
	s.failures, s.lastErr, s.nextAttempt, s.lastRefresh = 0, nil, time.Time{}, now
	s.armLocked(now, c.refreshAt)
	s.mu.Unlock()
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

// noteSkewLocked keeps the disagreement between a JWT's exp and the
// IdP's expires_in, and logs it once per profile when it is large: the
// host's clock and the IdP's differ, and expiry is computed on the host's.
func (s *source) noteSkewLocked(skew time.Duration) {
	s.skew = skew
	if skew.Abs() > clockSkewWarn && !s.skewLogged {
		s.skewLogged = true
		s.log.Warn().Dur("skew", skew.Round(time.Second)).
			Msg("the token's exp and the IdP's expires_in disagree: the host's clock and the IdP's differ (check NTP); expiry is taken as the earlier of the two")
	}
}

// record is c as the store keeps it.
func (s *source) record(c *cached) store.Record {
	return store.Record{
		Profile: s.prof.name, Fingerprint: s.prof.fingerprint,
		AccessToken: c.AccessToken, TokenType: c.TokenType, Scope: c.Scope,
		ExpiresAt: c.ExpiresAt, ObtainedAt: c.ObtainedAt,
	}
}

// seed installs a token loaded from the store. No timer is armed: the
// first request arms it (see token), so profiles nobody uses after a
// restart cost no IdP requests.
func (s *source) seed(r store.Record) {
	ttl := r.ExpiresAt.Sub(r.ObtainedAt)
	c := &cached{
		Token: Token{
			AccessToken: r.AccessToken, TokenType: r.TokenType, Scope: r.Scope,
			ExpiresAt: r.ExpiresAt.Round(0), ObtainedAt: r.ObtainedAt.Round(0),
		},
		refreshAt: refreshTime(r.ObtainedAt.Round(0), ttl, s.prof.timing, s.agent.rand()),
		sum:       sha256.Sum256([]byte(r.AccessToken)),
		fromStore: true,
	}
	// A stored token's times are wall times: the monotonic ones start
	// from them, as the clocks read now.
	now, mono := readClock(s.agent.clock)
	c.monoExpiry, c.monoRefresh = mono+c.ExpiresAt.Sub(now), mono+c.refreshAt.Sub(now)
	s.cur.Store(c)
	s.writeSinks(c.Token)
}

// sinkWait bounds how long the callers waiting for a fresh token wait
// for its file sinks to be written: on a healthy disk the files are
// current when the callers are answered; a hung one costs them at most
// this, and the write goes on in the background.
const sinkWait = time.Second

// writeSinksAfter writes c to the profile's file sinks, waiting at most
// sinkWait. Writes are one at a time per profile and the latest token
// wins: a write that finds a newer token pending leaves it to the next. A
// source a reload replaced writes nothing more.
func (s *source) writeSinksAfter(c *cached) {
	if len(s.prof.sinks) == 0 {
		return
	}
	s.sinkNext.Store(c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.sinkMu.Lock()
		defer s.sinkMu.Unlock()
		next := s.sinkNext.Swap(nil)
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if next != nil && !closed {
			s.writeSinks(next.Token)
		}
	}()
	select {
	case <-done:
	case <-time.After(sinkWait):
		s.log.Error().Dur("waited", sinkWait).Msg("a token file sink write has not finished: its disk may be hung; callers are answered, and the file is written when the disk answers")
	}
}

// writeSinks puts tok into the profile's file sinks; a failure is logged
// and never stops the token being served.
func (s *source) writeSinks(tok Token) {
	for _, sk := range s.prof.sinks {
		if err := sk.write(tok, s.agent.clock.Now()); err != nil {
			s.log.Error().Err(err).Str("file", sk.path).Msg("cannot write the token file sink; callers of the socket are still served")
		}
	}
}

// failedLocked records a failed fetch and schedules the next attempt.
func (s *source) failedLocked(now time.Time, err error, latency time.Duration) {
	t := s.prof.timing
	var ie *idp.Error
	isIdP := errors.As(err, &ie)
	var wait time.Duration
	if isIdP && !ie.Transient {
		wait = t.PermanentBackoff.Duration
	} else {
		s.failures++
		var retryAfter time.Duration
		if isIdP {
			retryAfter = ie.RetryAfter
		}
		wait = schedule.Backoff(s.failures, s.agent.rand(), t.MaxBackoff.Duration, retryAfter)
	}
	s.lastErr, s.lastFailure, s.permanent = err, now, isIdP && !ie.Transient
	s.retryUntil = time.Time{}
	if isIdP && ie.RetryAfter > 0 {
		s.retryUntil = now.Add(ie.RetryAfter)
	}
	s.nextAttempt = now.Add(wait)
	s.armLocked(now, s.nextAttempt)

	ev := s.log.Warn().Err(err).Dur("retry_in", wait).Dur("latency", latency).Int("failures", s.failures)
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
	if s.stopTimer != nil {
		s.stopTimer()
	}
	s.idle = false
	s.stopTimer = s.agent.clock.AfterFunc(max(at.Sub(now), 0), s.onTimer)
	s.timerDue.Store(at.UnixNano())
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
	due := s.timerDue.Load()
	if due != 0 && now.UnixNano() <= due+int64(lateTimer) {
		return // another caller did it
	}
	at := s.nextAttempt
	if c := s.cur.Load(); c != nil {
		if refresh := now.Add(c.untilDue(now, s.agent.clock.Mono())); refresh.After(at) {
			at = refresh
		}
	}
	if s.idle {
		s.log.Info().Msg("profile in use again; background refresh resumed")
	}
	s.armLocked(now, at)
}

// onTimer refreshes proactively, unless the profile went idle.
func (s *source) onTimer() {
	s.mu.Lock()
	s.stopTimer = nil
	s.timerDue.Store(0)
	if s.closed {
		s.mu.Unlock()
		return
	}
	now := s.agent.clock.Now()
	// A profile with file sinks is never idle: a script may read the file
	// at any time without the agent seeing it.
	if unused := now.Sub(time.Unix(0, s.lastUsed.Load())); unused >= s.prof.timing.IdleAfter.Duration && len(s.prof.sinks) == 0 {
		s.idle = true
		s.log.Info().Dur("unused_for", unused.Round(time.Second)).Msg("profile idle; background refresh paused until the next request")
		s.mu.Unlock()
		return
	}
	if now.Before(s.nextAttempt) {
		s.armLocked(now, s.nextAttempt)
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
	s.mu.Unlock()
	s.sf.Do(fetchKey, s.fetch)
}

// forcedRefreshInterval is the least time between two refreshes forced
// by rejected-token reports for one profile: a caller that reports every
// token it gets cannot turn the agent into a token pump against the IdP.
const forcedRefreshInterval = 10 * time.Second

// reject handles a report that the token with SHA-256 sum was refused by
// an API. If it is the current token, one new token is fetched, however
// many callers report it (they join the same fetch) — unless a forced
// refresh happened less than forcedRefreshInterval ago or the IdP is being
// waited out, in which case the current token is returned. The current
// token is never dropped: if the fetch fails, it is still served while it
// is valid. A report of any other token returns the current one.
func (s *source) reject(ctx context.Context, sum [32]byte, minValid time.Duration) (*Token, error) {
	s.mu.Lock()
	c := s.cur.Load()
	now := s.agent.clock.Now()
	if c == nil || c.sum != sum {
		s.mu.Unlock()
		return s.token(ctx, minValid)
	}
	s.fleetRejected(sum)
	if s.forcing != sum { // not joining a forced refresh of this token already under way
		limited := !s.lastForced.IsZero() && now.Sub(s.lastForced) < forcedRefreshInterval
		if limited || s.lastErr != nil && now.Before(s.nextAttempt) {
			s.mu.Unlock()
			s.log.Debug().Bool("rate_limited", limited).Msg("token reported rejected; not refreshing yet, serving the current token")
			return s.token(ctx, minValid)
		}
		s.forcing, s.lastForced = sum, now
		s.log.Info().Str("token_sha256", ipc.Fingerprint(c.AccessToken)).Msg("token reported rejected by an API; fetching a new one (the current one is served until it arrives)")
	}
	ch := s.sf.DoChan(fetchKey, s.fetch)
	s.mu.Unlock()
	select {
	case r := <-ch:
		s.mu.Lock()
		if s.forcing == sum {
			s.forcing = [32]byte{} // done: a later report of this token is rate-limited, not joined
		}
		if cur := s.cur.Load(); r.Err != nil && cur != nil && cur.sum == sum {
			// Still the rejected token: refresh it at the next attempt the
			// backoff allows, not only at its planned refresh time.
			due := *cur
			due.refreshAt, due.monoRefresh = s.agent.clock.Now(), s.agent.clock.Mono()
			s.cur.Store(&due)
		}
		s.mu.Unlock()
		if r.Err != nil {
			if tok, err := s.token(ctx, minValid); err == nil {
				return tok, nil // the replacement failed: the still-valid token stays
			}
			return nil, r.Err
		}
		return s.fresh(r.Val.(*cached), minValid)
	case <-ctx.Done():
		return nil, ctx.Err()
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
	if s.lastErr == nil {
		return
	}
	s.log.Info().Msg("configuration reloaded: the held IdP failure is forgotten; the IdP is asked again on the next request")
	s.lastErr, s.failures, s.permanent = nil, 0, false
	s.nextAttempt, s.retryUntil, s.lastFailure = time.Time{}, time.Time{}, time.Time{}
	if c := s.cur.Load(); c != nil && !s.closed {
		now := s.agent.clock.Now()
		s.armLocked(now, now.Add(c.untilDue(now, s.agent.clock.Mono())))
	}
}

func (s *source) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.coord != nil {
		s.coord.Close()
	}
	if s.stopTimer != nil {
		s.stopTimer()
		s.stopTimer = nil
	}
	s.timerDue.Store(0)
}

// status reports the source's state and counters.
func (s *source) status(now time.Time) ProfileStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ProfileStatus{
		ProfileInfo: ipc.ProfileInfo{
			Name:             s.prof.name,
			UpstreamRequests: s.requests,
			LastRefresh:      s.lastRefresh.UTC(),
			Idle:             s.idle,
			Scopes:           s.prof.scopes,
			Audience:         s.prof.audience,
		},
		Results:   maps.Clone(s.results),
		Latency:   s.latency,
		Minted:    s.minted,
		Coalesced: s.coalesced,
		Served:    s.served.Load(),
	}
	if c := s.cur.Load(); c != nil {
		st.Origin, st.ObtainedAt = "idp", c.ObtainedAt.UTC()
		switch {
		case c.fromStore:
			st.Origin = "store"
		case c.fromFleet:
			st.Origin = "fleet"
		}
		st.ExpiresAt = c.serve(now, s.agent.clock.Mono()).ExpiresAt.UTC()
		st.RefreshAt = now.Add(c.untilDue(now, s.agent.clock.Mono()))
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
		st.NextAttempt = s.nextAttempt.UTC()
	}
	if s.skew.Abs() > clockSkewWarn {
		st.ClockSkew, st.ClockSkewSeconds = s.skew, s.skew.Seconds()
	}
	if s.agent.fleet != nil {
		st.Fleet = "local"
		if s.coord != nil {
			st.Fleet, st.FleetStats = s.coord.Status()
		}
		if c := s.cur.Load(); c != nil {
			st.MintedBy = cmp.Or(c.mintedBy, s.agent.hostname)
		}
	}
	return st
}
