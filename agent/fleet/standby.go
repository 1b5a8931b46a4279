package fleet

// Static stability: while the fleet fails, a profile fetches for this host
// alone, logs it once, probes now and then, and rejoins by itself; and the
// watch that brings other hosts' tokens.

import (
	"context"
	"errors"
	"time"
)

// usable reports whether the fleet is to be asked now.
func (c *Coordinator) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.down || !c.cfg.Clock.Now().Before(c.retry)
}

// trouble logs a backend failure once until the fleet works again; the
// profile goes on fetching for this host alone, and asks the fleet again
// after RetryAfter, when a probe reads it.
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

// probe reads the fleet while the profile is down to this host alone;
// once it answers, the profile rejoins and takes the fleet's token if that
// is newer. It probes again after RetryAfter until then.
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
	if c.down && c.stopProbe == nil && !c.closed {
		// Still down without a new failure noted (a wrong key read as
		// such again): probe on.
		c.stopProbe = c.cfg.Clock.AfterFunc(RetryAfter, c.probe)
	}
	c.mu.Unlock()
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
