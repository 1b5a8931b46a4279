package agent

import (
	"cmp"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenagent/tokenagent/agent/schedule"
	"github.com/tokenagent/tokenagent/ipc"
)

// stats counts what a source did, for status and metrics. Its mutex
// guards the counters alone: a status read never waits on a fetch or a
// timer, and counting never holds up the refresh schedule.
type stats struct {
	served atomic.Uint64 // tokens handed out: counted on every answer, so without the lock

	mu          sync.Mutex
	requests    int               // upstream requests made
	results     map[string]uint64 // upstream requests by result ("ok" or an error class)
	latency     Histogram
	minted      uint64        // successful fetches
	coalesced   uint64        // callers who waited on a fetch another caller started
	lastRefresh time.Time     // when the last fetched token was installed
	skew        time.Duration // the JWT's exp − (sent + expires_in), last seen
	skewLogged  bool
}

// request counts an upstream request that ended in err after latency.
func (st *stats) request(err error, latency time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.requests++
	st.latency.observe(latency)
	if st.results == nil {
		st.results = map[string]uint64{}
	}
	st.results[resultClass(err)]++
}

// mint counts a fetched token installed at now.
func (st *stats) mint(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.minted++
	st.lastRefresh = now
}

// coalesce counts a caller who waited on a fetch another caller started.
func (st *stats) coalesce() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.coalesced++
}

// noteSkew keeps skew and reports whether it is the first large one
// (beyond schedule.ClockSkewWarn) this source has seen.
func (st *stats) noteSkew(skew time.Duration) (first bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.skew = skew
	if skew.Abs() > schedule.ClockSkewWarn && !st.skewLogged {
		st.skewLogged = true
		return true
	}
	return false
}

// fill copies the counters into ps.
func (st *stats) fill(ps *ProfileStatus) {
	st.mu.Lock()
	defer st.mu.Unlock()
	ps.UpstreamRequests = st.requests
	ps.LastRefresh = st.lastRefresh.UTC()
	ps.Results = maps.Clone(st.results)
	ps.Latency = st.latency
	ps.Minted, ps.Coalesced, ps.Served = st.minted, st.coalesced, st.served.Load()
	if st.skew.Abs() > schedule.ClockSkewWarn {
		ps.ClockSkew, ps.ClockSkewSeconds = st.skew, st.skew.Seconds()
	}
}

// noteSkew keeps the disagreement between a JWT's exp and the IdP's
// expires_in, and logs it once per profile when it is large: the host's
// clock and the IdP's differ, and expiry is computed on the host's.
func (s *source) noteSkew(skew time.Duration) {
	if s.stats.noteSkew(skew) {
		s.log.Warn().Dur("skew", skew.Round(time.Second)).
			Msg("the token's exp and the IdP's expires_in disagree: the host's clock and the IdP's differ (check NTP); expiry is taken as the earlier of the two")
	}
}

// status reports the source's state and counters, each concern read
// under its own lock.
func (s *source) status(now time.Time) ProfileStatus {
	st := ProfileStatus{
		ProfileInfo: ipc.ProfileInfo{Name: s.prof.name, Scopes: s.prof.scopes, Audience: s.prof.audience},
	}
	s.stats.fill(&st)
	st.Callers = s.callers.recent()
	s.mu.Lock()
	st.Idle = s.timer.idle
	failures := s.failures
	s.mu.Unlock()
	if failures.Err != nil {
		st.LastError = failures.Err.Error()
		st.NextAttempt = failures.NextAttempt.UTC()
	}
	c := s.cur.Load()
	if c != nil {
		st.Origin, st.ObtainedAt = "idp", c.ObtainedAt.UTC()
		switch {
		case c.fromStore:
			st.Origin = "store"
		case c.fromFleet:
			st.Origin = "fleet"
		}
		mono := s.agent.clock.Mono()
		st.ExpiresAt = c.serve(now, mono).ExpiresAt.UTC()
		st.RefreshAt = now.Add(c.untilDue(now, mono))
	}
	if exp := s.prof.client.AssertionExpiresAt(); !exp.IsZero() {
		st.AssertionExpiresAt = exp.UTC()
	}
	st.Budgets = s.agent.budgetStatus(s.prof.name, now)
	if exp := s.sinkExpiresAt(); !exp.IsZero() {
		st.SinkExpiresAt, st.SinkStale = exp, !now.Before(exp)
	}
	if s.agent.fleet != nil {
		st.Fleet = "local"
		if s.coord != nil {
			st.Fleet, st.FleetStats = s.coord.Status()
		}
		if c != nil {
			st.MintedBy = cmp.Or(c.mintedBy, s.agent.hostname)
		}
	}
	return st
}
