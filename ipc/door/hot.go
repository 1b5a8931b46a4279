package door

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tokenagent/tokenagent/ipc"
)

// What a cache hit costs at a door is mostly what the door adds around
// the engine's answer; the helpers here keep that to what a bare net/http
// server pays.

// fingerprints remembers the fingerprints of the tokens served lately.
// A cache hit hands out the very string the engine holds, so the string's
// address (and length) identifies it: the entry keeps the string alive,
// so its memory cannot be reused for another token while it is cached.
var fingerprints [64]atomic.Pointer[fingerprintEntry]

type fingerprintEntry struct{ token, fingerprint string }

// TokenFingerprint is ipc.Fingerprint(token), computed once per token
// rather than once per request.
func TokenFingerprint(token string) string {
	if token == "" {
		return ipc.Fingerprint(token)
	}
	p := unsafe.StringData(token)
	slot := &fingerprints[(uintptr(unsafe.Pointer(p))>>4)%uintptr(len(fingerprints))]
	if e := slot.Load(); e != nil && unsafe.StringData(e.token) == p && len(e.token) == len(token) {
		return e.fingerprint
	}
	fp := ipc.Fingerprint(token)
	slot.Store(&fingerprintEntry{token: token, fingerprint: fp})
	return fp
}

// WithTimeout is context.WithTimeout for a request that will most often
// be answered at once (a cache hit): the timer, and the registration with
// the parent that context.WithTimeout makes, are made only when the
// context is first waited on (Done or Err). The deadline is fixed now.
func WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	l := &lazyTimeout{Context: parent, deadline: time.Now().Add(d)}
	return l, l.stop
}

type lazyTimeout struct {
	context.Context // the parent
	deadline        time.Time
	once            sync.Once
	ctx             context.Context
	cancel          context.CancelFunc
	stopped         atomic.Bool
}

func (l *lazyTimeout) real() context.Context {
	l.once.Do(func() {
		l.ctx, l.cancel = context.WithDeadline(l.Context, l.deadline)
		if l.stopped.Load() {
			l.cancel()
		}
	})
	return l.ctx
}

func (l *lazyTimeout) Deadline() (time.Time, bool) {
	if d, ok := l.Context.Deadline(); ok && d.Before(l.deadline) {
		return d, true
	}
	return l.deadline, true
}

func (l *lazyTimeout) Done() <-chan struct{} { return l.real().Done() }
func (l *lazyTimeout) Err() error            { return l.real().Err() }

// stop is the CancelFunc: it releases the timer if one was made; a
// context never waited on is simply marked done, with no timer made.
func (l *lazyTimeout) stop() {
	l.stopped.Store(true)
	l.once.Do(func() { l.ctx, l.cancel = canceled, func() {} })
	l.cancel()
}

// canceled is a context that is done: what a lazyTimeout stopped before
// anyone waited on it becomes.
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()
