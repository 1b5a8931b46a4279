package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/schedule"
	"github.com/tokenagent/tokenagent/ipc"
)

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
// Its state is kept by concern, each under its own lock: the refresh
// schedule under mu (this file and refresh.go), the counters in stats
// (stats.go), the forced-refresh limit in forced (forced.go), the file
// sink writer under sinkMu (sink.go) and the fleet in coord.
type source struct {
	agent *Agent
	prof  *profile
	log   zerolog.Logger
	sf    singleflight.Group

	cur      atomic.Pointer[cached] // the token served: read without a lock, written under mu
	lastUsed atomic.Int64           // wall clock, Unix ns: idling reads it, every caller writes it

	stats   stats           // counters for status and metrics
	callers recentCallers   // who was admitted lately, and by which rule
	forced  forcedRefreshes // the limit on refreshes that rejected-token reports force

	sinkNext atomic.Pointer[cached] // the token the sink writer has yet to write
	sinkMu   sync.Mutex             // one sink write at a time (see writeSinksAfter)
	// sinkExpiry holds, for each of prof.sinks, the expiry (wall clock,
	// Unix ns) of the token last written to its file; 0 until one is.
	sinkExpiry []atomic.Int64

	// mu guards the refresh schedule: which token is installed in cur,
	// the timer that refreshes it, the failures that push the next attempt
	// back, and closed. They change together (a fetch's outcome installs a
	// token or records a failure, and re-arms the timer, in one step), and
	// a closed source installs and arms nothing more.
	mu       sync.Mutex
	timer    refreshTimer
	failures schedule.Failures // since the last success
	closed   bool

	// coord shares the profile's tokens with other hosts; nil when it
	// takes no part in a fleet.
	coord *fleet.Coordinator
}

func newSource(a *Agent, p *profile) *source {
	s := &source{agent: a, prof: p, log: a.log.With().Str("profile", p.name).Logger()}
	s.sinkExpiry = make([]atomic.Int64, len(p.sinks))
	s.coord = newCoordinator(s)
	s.lastUsed.Store(a.clock.Now().UnixNano())
	return s
}

// token returns a token valid for at least minValid.
func (s *source) token(ctx context.Context, minValid time.Duration) (*Token, error) {
	now, mono := readClock(s.agent.clock)
	s.lastUsed.Store(now.UnixNano())
	if c := s.cur.Load(); c != nil && c.left(now, mono) >= minValid {
		if s.timer.needsWaking(now) {
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
	if c != nil && c.left(now, mono) > 0 {
		if _, paused := s.agent.budgetPause(s.prof.name, now); paused {
			// budget_enforce, and the budget is spent: the token held is
			// served while it is valid at all, min_valid or not.
			s.mu.Unlock()
			return c.serve(now, mono), nil
		}
	}
	if wait := s.holdLocked(now); wait > 0 {
		err := &holdError{wait: wait, err: s.failures.Err}
		s.mu.Unlock()
		return nil, err
	}
	ch := s.sf.DoChan(fetchKey, s.fetch)
	s.mu.Unlock()

	select {
	case r := <-ch:
		if r.Shared {
			s.stats.coalesce()
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
	wait := s.failures.Hold(now)
	if wait > 0 && s.prof.client.AssertionRenewed() {
		// The refusal was of a platform token the platform has replaced
		// (a stat of its file, while a refusal is held): ask again now,
		// not after permanent_backoff.
		s.log.Info().Msg("the platform wrote a new client assertion since the IdP refused the last one: the refusal is forgotten and the IdP asked again")
		s.failures = schedule.Failures{}
		if s.coord != nil {
			s.coord.Forget()
		}
		return 0
	}
	return wait
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
	if c, now, mono := s.cur.Load(), s.agent.clock.Now(), s.agent.clock.Mono(); c == nil || c.left(now, mono) <= 0 {
		s.agent.beyondBudget(s.prof.name, now)
	}
	if s.coord != nil {
		return s.fetchShared()
	}
	return s.fetchIdP(s.agent.ctx)
}

func (s *source) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.coord != nil {
		s.coord.Close()
	}
	s.timer.disarm()
}
