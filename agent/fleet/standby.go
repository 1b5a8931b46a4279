package fleet

// Static stability: while the fleet fails, a profile fetches for this host
// alone, logs it once, probes now and then, and rejoins by itself once a
// write succeeds; and the watch that brings other hosts' tokens.

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"
)

// usable reports whether the fleet is to be asked now.
func (c *Coordinator) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.down || !c.cfg.Clock.Now().Before(c.retry)
}

// trouble logs a backend failure once until the fleet works again (back);
// the profile goes on fetching for this host alone, and asks the fleet
// again after RetryAfter, when a probe reads it.
func (c *Coordinator) trouble(err error) {
	c.mu.Lock()
	first := !c.down
	c.down, c.retry = true, c.cfg.Clock.Now().Add(RetryAfter)
	c.wrongKey = errors.Is(err, ErrWrongKey)
	if first && !c.closed {
		c.stopProbe = c.cfg.Clock.AfterFunc(RetryAfter, c.probe)
	}
	closed := c.closed
	c.mu.Unlock()
	switch {
	case !first || closed:
	case errors.Is(err, ErrWrongKey):
		c.cfg.Log.Error().Err(err).Msg("this host's [fleet] seal_key is not the fleet's: it fetches tokens for itself and shares none; give it the fleet's seal_key and reload")
	default:
		c.cfg.Log.Warn().Err(err).Msg("fleet unavailable; fetching tokens for this host alone until it answers")
	}
}

// back notes a write the backend took: the fleet works again, which is
// logged once. Only a write counts: with etcd's NOSPACE alarm raised
// every read succeeds and every write (a lease, a record) fails, and
// counting a read would log the fleet back at each probe and gone at the
// next fetch.
func (c *Coordinator) back() {
	c.mu.Lock()
	was := c.down && !c.closed
	c.down, c.readable, c.wrongKey = false, false, false
	if c.stopProbe != nil {
		c.stopProbe()
		c.stopProbe = nil
	}
	c.mu.Unlock()
	if was {
		c.cfg.Log.Info().Msg("fleet available again; sharing tokens with the other hosts")
	}
}

// probe reads the fleet while the profile is down to this host alone,
// taking the fleet's token if that is newer; once reads work, it proves
// that writes do (rejoin), and the profile rejoins. It probes again after
// RetryAfter until then.
func (c *Coordinator) probe() {
	c.mu.Lock()
	c.stopProbe = nil
	down, closed, ctx := c.down, c.closed, c.ctx
	c.mu.Unlock()
	if !down || closed || ctx == nil {
		return
	}
	c.read(ctx) // a failure re-arms the probe (trouble)
	c.mu.Lock()
	readable := c.down && c.readable && !c.wrongKey
	c.mu.Unlock()
	if readable {
		c.rejoin(ctx)
	}
	c.mu.Lock()
	if c.down && c.stopProbe == nil && !c.closed {
		// Still down without a new failure noted (a wrong key read as
		// such again, writes still refused): probe on.
		c.stopProbe = c.cfg.Clock.AfterFunc(RetryAfter, c.probe)
	}
	c.mu.Unlock()
}

// rejoin is the probe's write, while the fleet answers reads: under the
// lock, as a fetch writes, it shares the token this host holds — fetched
// alone meanwhile, or the fleet's own — unless the fleet's record is
// newer (offered to the profile instead) or a refusal still in force.
// The IdP is not asked: holding no valid token, or with the fleet's
// newer, the profile stays down until the next probe or fetch writes.
// A failure is noted (trouble), not logged again.
func (c *Coordinator) rejoin(ctx context.Context) {
	held, ok := c.prof.Held()
	now := c.cfg.Clock.Now()
	if !ok || held.AccessToken == "" || !held.ExpiresAt.After(now) || c.isRejected(held.AccessToken) {
		return
	}
	c.mu.Lock()
	arrived := c.arrived
	c.mu.Unlock()
	unlock, err := c.lock(ctx, arrived)
	if err != nil {
		select {
		case <-arrived: // the fleet's token came by watch: nothing to share
		default:
			if !errors.Is(err, errLockWait) && ctx.Err() == nil {
				c.trouble(err)
			}
		}
		return
	}
	defer unlock()
	r, found, err := c.cfg.Backend.Get(ctx, c.cfg.Fingerprint)
	switch {
	case errors.Is(err, ErrTampered): // junk: written over
	case err != nil:
		c.trouble(err)
		return
	case found && c.current(r) && (newer(r, held) || r.Failure != nil && r.Failure.Until.After(now)):
		c.adopt(r)
		return
	}
	held.MintedBy = c.cfg.Host
	if found && r.AccessToken == held.AccessToken {
		held.MintedBy = r.MintedBy
	}
	held.Generation, held.Failure = c.nextGeneration(), nil
	if err := c.cfg.Backend.Put(ctx, c.cfg.Fingerprint, held); err != nil {
		c.trouble(err)
		return
	}
	c.back()
}

// newer reports whether r holds another token than held that outlives
// it (by expiry; in the same second, by when it was fetched), as the
// engine decides what to adopt.
func newer(r, held Record) bool {
	return r.AccessToken != held.AccessToken && (r.ExpiresAt.After(held.ExpiresAt) ||
		r.ExpiresAt.Equal(held.ExpiresAt) && r.ObtainedAt.After(held.ObtainedAt))
}

// isRejected reports whether token was reported rejected on this host.
func (c *Coordinator) isRejected(token string) bool {
	sum := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.rejected {
		if s == sum {
			return true
		}
	}
	return false
}

// watch offers the profile the tokens other hosts write, as soon as the
// backend delivers them, until ctx ends.
func (c *Coordinator) watch(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		ch, err := c.cfg.Backend.Watch(ctx, c.cfg.Fingerprint)
		if first {
			if err != nil && ctx.Err() == nil {
				c.trouble(err) // fetches go alone, the probe rejoins
			}
			close(c.watched) // registered, or the backend could not say so in time
			first = false
		}
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(watchRetry):
			}
			continue
		}
		for r := range ch {
			if c.current(r) {
				c.adopt(r)
			}
		}
	}
}
