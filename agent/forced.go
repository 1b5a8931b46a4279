package agent

import (
	"context"
	"sync"
	"time"

	"github.com/tokenagent/tokenagent/agent/schedule"
	"github.com/tokenagent/tokenagent/ipc"
)

// forcedRefreshes limits the refreshes that rejected-token reports force
// for one profile (schedule.ForcedRefresh); its mutex guards that limit
// alone. reject asks it while holding source.mu, so that the decision and
// the fetch it starts see the same failures: source.mu, then this one.
type forcedRefreshes struct {
	mu    sync.Mutex
	limit schedule.ForcedRefresh
}

func (f *forcedRefreshes) decide(sum [32]byte, now time.Time, held bool) schedule.Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.limit.Decide(sum, now, held)
}

func (f *forcedRefreshes) done(sum [32]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limit.Done(sum)
}

// reject handles a report that the token with SHA-256 sum was refused by
// an API. If it is the current token, one new token is fetched, however
// many callers report it (they join the same fetch) — unless a forced
// refresh happened less than schedule.ForcedRefreshInterval ago or the
// IdP is being waited out, in which case the current token is returned. The current
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
	s.fleetRejected(sum) // never taken from the fleet again
	switch v := s.forced.decide(sum, now, s.failures.Holding(now)); v {
	case schedule.Limited, schedule.Held:
		s.mu.Unlock()
		s.log.Debug().Bool("rate_limited", v == schedule.Limited).Msg("token reported rejected; not refreshing yet, serving the current token")
		return s.token(ctx, minValid)
	case schedule.Start:
		s.log.Info().Str("token_sha256", ipc.Fingerprint(c.AccessToken)).Msg("token reported rejected by an API; fetching a new one (the current one is served until it arrives)")
	}
	ch := s.sf.DoChan(fetchKey, s.fetch)
	s.mu.Unlock()
	select {
	case r := <-ch:
		s.forced.done(sum)
		s.mu.Lock()
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
