package tokenendpoint

import (
	"sync"
	"time"
)

// Wrong local secrets are paid for in time: a source (a client_id asked
// for by callers nobody could identify) may get freeFailures wrong, then
// waits firstBackoff before its next attempt is even checked, doubling
// with each wrong one up to maxBackoff. A 128-bit secret is out of reach
// either way; this keeps a weak one from falling in a second, and the
// log to one line per step.
const (
	freeFailures = 5
	firstBackoff = time.Second
	maxBackoff   = 5 * time.Minute
	// forgetAfter: a source with no wrong secret for this long starts
	// again from nothing.
	forgetAfter = 2 * maxBackoff
	// maxSources bounds the memory callers can make the agent spend on
	// client_ids they invent; beyond it they share one source.
	maxSources = 1024
)

// secretBackoff counts wrong local secrets per source. It is arithmetic
// on the times it is given, with no clock or goroutine of its own.
type secretBackoff struct {
	mu      sync.Mutex
	sources map[string]*secretFailures
}

type secretFailures struct {
	failures int       // wrong secrets checked, in a row
	last     time.Time // the last one
	until    time.Time // no attempt is checked before then
}

// wait is how long source must still wait before an attempt of its is
// checked; 0 when it may try now.
func (b *secretBackoff) wait(source string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.find(source, now)
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// failed counts a wrong secret of source; when it starts a wait, it
// returns how long and how many wrong secrets in a row led to it.
func (b *secretBackoff) failed(source string, now time.Time) (backoff time.Duration, failures int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.find(source, now)
	if f == nil {
		f = b.add(source, now)
	}
	f.failures++
	f.last = now
	if f.failures < freeFailures {
		return 0, f.failures
	}
	backoff = maxBackoff
	if shift := f.failures - freeFailures; shift < 20 {
		backoff = min(firstBackoff<<shift, maxBackoff)
	}
	f.until = now.Add(backoff)
	return backoff, f.failures
}

// add starts source's count; when callers have made too many, the
// count every further source shares.
func (b *secretBackoff) add(source string, now time.Time) *secretFailures {
	if b.sources == nil {
		b.sources = map[string]*secretFailures{}
	}
	if len(b.sources) >= maxSources {
		b.prune(now)
	}
	if len(b.sources) >= maxSources {
		source = ""
		if f := b.sources[source]; f != nil {
			return f
		}
	}
	f := &secretFailures{}
	b.sources[source] = f
	return f
}

// succeeded forgets source's wrong secrets.
func (b *secretBackoff) succeeded(source string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.sources, source)
}

// find is source's count, nil when it has none or it is forgotten.
func (b *secretBackoff) find(source string, now time.Time) *secretFailures {
	f := b.sources[source]
	if f != nil && now.Sub(f.last) > forgetAfter && !now.Before(f.until) {
		delete(b.sources, source)
		return nil
	}
	return f
}

// prune forgets the sources that are not waiting.
func (b *secretBackoff) prune(now time.Time) {
	for source, f := range b.sources {
		if !now.Before(f.until) && (f.failures < freeFailures || now.Sub(f.last) > forgetAfter) {
			delete(b.sources, source)
		}
	}
}
