// Package persist owns the token store writer: it keeps a store.Store in
// step with the tokens an engine holds, off the serving path. Put and
// Remove only note what to write and return; one goroutine (Run) writes,
// notices a stalled or failing disk and a deleted store file, opens a
// store that was unavailable, and Close flushes what is pending.
//
// The store is a cache: tokens are served from memory the moment the IdP
// answers, and the writer persists them afterwards. A disk that hangs,
// fills up, turns read-only or loses the file costs restarts their stored
// tokens, never a caller its token.
package persist

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

const (
	// StallAfter is how long a write may take before the store counts
	// as stalled (logged, on /metrics and in status).
	StallAfter = 5 * time.Second
	// CheckEvery is how often the writer checks that the file is still
	// there and, while the store is unavailable, tries to open it.
	CheckEvery = 30 * time.Second
	// flushOnClose bounds the last writes at shutdown: a hung disk does
	// not hang the process's exit.
	flushOnClose = 5 * time.Second
	// logEvery: failing writes are logged when they start, and again no
	// sooner than this after the last time, so that a disk that comes and
	// goes (a full disk that some writes still fit) does not flood the
	// log. Status and /metrics show every change.
	logEvery = 10 * time.Minute
)

// Store states, as status and /metrics show them.
const (
	StateOK          = "ok"
	StateMemory      = "memory"      // store = "memory": nothing to persist
	StateFailing     = "failing"     // the last write failed
	StateStalled     = "stalled"     // a write has not returned for StallAfter
	StateUnavailable = "unavailable" // not open: failed at start, or its file went away
)

// Clock is the time the writer runs on: the engine's, so that its checks
// and stall reports follow a simulated clock in tests. The engine's own
// Clock (agent.Clock) satisfies it.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless stop is
	// called first.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Options configure a Writer; Path is required, the rest may be zero.
type Options struct {
	// Path is the store's file, for logs and health.
	Path string
	// Store is the open store, which the Writer owns from now on; nil
	// when it could not be opened (OpenErr says why).
	Store   *store.Store
	OpenErr error
	// Reopen opens the store again: while it is unavailable and after its
	// file was deleted. nil: never reopened.
	Reopen func() (*store.Store, error)
	// Adopt is called with a store opened again by Reopen, before any
	// write to it: the engine seeds itself from it and returns the tokens
	// it holds, which are written to it. nil: nothing is written but what
	// comes later.
	Adopt func(*store.Store) []store.Record
	// Changed is called whenever the store's state may have changed.
	Changed func()
	// Clock is the time source; nil means the system clock.
	Clock Clock
	// Logger receives one event per state change; nil means none.
	Logger *zerolog.Logger
}

// Writer keeps the store in step with the tokens, off the serving path.
type Writer struct {
	path    string
	reopen  func() (*store.Store, error)
	adopt   func(*store.Store) []store.Record
	changed func()
	clock   Clock
	log     zerolog.Logger

	mu       sync.Mutex
	st       *store.Store // nil while unavailable
	puts     map[string]store.Record
	deletes  map[string]bool
	counts   map[string]store.Count // budget counts by scope
	dropped  map[string]bool        // budget counts to delete, by scope
	state    string
	lastErr  error
	stalls   uint64
	failures uint64
	failLog  time.Time // when failing writes were last logged
	logged   bool      // failing writes were logged and their end is not yet

	wake       chan struct{}
	stopOnce   sync.Once
	stop       chan struct{}
	done       chan struct{}
	stallAfter time.Duration
	checkEvery time.Duration
	created    time.Time // the first check is due CheckEvery after
}

// New returns a writer over opts.Store; Run starts it.
func New(opts Options) *Writer {
	w := &Writer{path: opts.Path, reopen: opts.Reopen, adopt: opts.Adopt, changed: opts.Changed,
		clock: opts.Clock, log: zerolog.Nop(), st: opts.Store, state: StateOK,
		puts: map[string]store.Record{}, deletes: map[string]bool{},
		counts: map[string]store.Count{}, dropped: map[string]bool{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		stallAfter: StallAfter, checkEvery: CheckEvery}
	if w.clock == nil {
		w.clock = systemClock{}
	}
	w.created = w.clock.Now()
	if w.changed == nil {
		w.changed = func() {}
	}
	if opts.Logger != nil {
		w.log = *opts.Logger
	}
	if w.st == nil {
		w.state, w.lastErr = StateUnavailable, opts.OpenErr
	}
	return w
}

// SetTimings changes the stall threshold and check interval, and the
// clock they run on, for tests that break real disks: a frozen disk
// stalls in real time while the engine's clock is simulated.
func (w *Writer) SetTimings(stallAfter, checkEvery time.Duration, c Clock) {
	w.mu.Lock()
	w.stallAfter, w.checkEvery = stallAfter, checkEvery
	if c != nil {
		w.clock = c
	}
	w.mu.Unlock()
	w.signal() // the writer picks the new interval up
}

// CheckEvery is the current check interval.
func (w *Writer) CheckEvery() time.Duration { return w.timings().check }

// Put notes r to be written.
func (w *Writer) Put(r store.Record) {
	w.mu.Lock()
	w.puts[r.Profile] = r
	delete(w.deletes, r.Profile)
	w.mu.Unlock()
	w.signal()
	w.changed()
}

// Remove notes profiles' records to be deleted.
func (w *Writer) Remove(profiles ...string) {
	if len(profiles) == 0 {
		return
	}
	w.mu.Lock()
	for _, name := range profiles {
		w.deletes[name] = true
		delete(w.puts, name)
	}
	w.mu.Unlock()
	w.signal()
	w.changed()
}

// PutCount notes a budget's count to be written (the latest per scope).
func (w *Writer) PutCount(c store.Count) {
	w.mu.Lock()
	w.counts[c.Scope] = c
	delete(w.dropped, c.Scope)
	w.mu.Unlock()
	w.signal()
}

// RemoveCounts notes the counts of scopes to be deleted.
func (w *Writer) RemoveCounts(scopes ...string) {
	if len(scopes) == 0 {
		return
	}
	w.mu.Lock()
	for _, s := range scopes {
		w.dropped[s] = true
		delete(w.counts, s)
	}
	w.mu.Unlock()
	w.signal()
}

// pendingLocked is how many writes wait: tokens, deletions, counts.
func (w *Writer) pendingLocked() int {
	return len(w.puts) + len(w.deletes) + len(w.counts) + len(w.dropped)
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run is the writer: it writes what is pending whenever there is some,
// and checks the file every CheckEvery, until Close.
func (w *Writer) Run() {
	defer close(w.done)
	t := w.timings()
	last := w.created
	for {
		due := make(chan struct{})
		stop := func() bool { return false }
		if wait := last.Add(t.check).Sub(t.clock.Now()); wait > 0 {
			stop = t.clock.AfterFunc(wait, func() { close(due) })
		} else {
			close(due) // overdue: the clock moved on while the writer wrote
		}
		select {
		case <-w.stop:
			stop()
			w.flush()
			return
		case <-due:
			w.check()
			last = t.clock.Now()
		case <-w.wake:
		}
		stop()
		w.flush()
		next := w.timings()
		if next.clock != t.clock { // SetTimings moved the writer to another clock
			last = next.clock.Now()
		}
		t = next
	}
}

type timings struct {
	stall, check time.Duration
	clock        Clock
}

func (w *Writer) timings() timings {
	w.mu.Lock()
	defer w.mu.Unlock()
	return timings{w.stallAfter, w.checkEvery, w.clock}
}

// check notices a store file that was deleted or replaced, and opens the
// store while it is unavailable.
func (w *Writer) check() {
	defer w.changed()
	w.mu.Lock()
	st := w.st
	w.mu.Unlock()
	if st != nil {
		gone, err := st.Detached()
		if err != nil || !gone {
			return
		}
		w.log.Error().Str("store", w.path).Msg("the token store file was deleted or replaced while the agent had it open; recreating it and writing the current tokens again")
		w.mu.Lock()
		w.st, w.state, w.lastErr = nil, StateUnavailable, fmt.Errorf("store %s: the file was deleted or replaced", w.path)
		w.mu.Unlock()
		st.Close()
	}
	if w.reopen == nil {
		return
	}
	st, err := w.reopen()
	if err != nil {
		w.mu.Lock()
		changed := w.lastErr == nil || w.lastErr.Error() != err.Error()
		w.lastErr = err
		w.mu.Unlock()
		if changed {
			w.log.Error().Err(err).Str("store", w.path).Dur("retry_in", w.timings().check).Msg("token store still unavailable; tokens are served from memory only and will not survive a restart")
		}
		return
	}
	var current []store.Record
	if w.adopt != nil {
		current = w.adopt(st)
	}
	w.mu.Lock()
	w.st, w.state, w.lastErr = st, StateOK, nil
	for _, r := range current {
		if _, newer := w.puts[r.Profile]; !newer {
			w.puts[r.Profile] = r
		}
	}
	w.mu.Unlock()
	w.log.Info().Str("store", w.path).Msg("token store open again; current tokens are being written to it")
}

// flush writes everything pending in one transaction. A write that does
// not return within stallAfter marks the store stalled (logged once);
// a failed one puts its records back unless newer ones came meanwhile.
func (w *Writer) flush() {
	defer w.changed()
	w.mu.Lock()
	st := w.st
	if st == nil || w.pendingLocked() == 0 {
		w.mu.Unlock()
		return
	}
	if gone, _ := st.Detached(); gone {
		w.mu.Unlock()
		w.check()
		w.mu.Lock()
		if st = w.st; st == nil {
			w.mu.Unlock()
			return
		}
	}
	puts, deletes, counts, dropped := w.puts, w.deletes, w.counts, w.dropped
	w.puts, w.deletes, w.counts, w.dropped = map[string]store.Record{}, map[string]bool{}, map[string]store.Count{}, map[string]bool{}
	t := timings{w.stallAfter, w.checkEvery, w.clock}
	w.mu.Unlock()

	start := t.clock.Now()
	stopStall := t.clock.AfterFunc(t.stall, func() {
		w.mu.Lock()
		w.state = StateStalled
		w.stalls++
		w.mu.Unlock()
		w.changed()
		w.log.Error().Str("store", w.path).Dur("waited", t.stall).
			Msg("a token store write has not finished: the disk may be hung or frozen; tokens are still served from memory, and new ones are written when it answers")
	})
	err := st.Write(slices.Collect(maps.Values(puts)), slices.Collect(maps.Keys(deletes)), slices.Collect(maps.Values(counts)), slices.Collect(maps.Keys(dropped)))
	stopStall()

	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.state
	if err != nil {
		w.failures++
		for name, r := range puts {
			if _, newer := w.puts[name]; !newer && !w.deletes[name] {
				w.puts[name] = r
			}
		}
		for name := range deletes {
			if _, newer := w.puts[name]; !newer {
				w.deletes[name] = true
			}
		}
		for scope, c := range counts {
			if _, newer := w.counts[scope]; !newer && !w.dropped[scope] {
				w.counts[scope] = c
			}
		}
		for scope := range dropped {
			if _, newer := w.counts[scope]; !newer {
				w.dropped[scope] = true
			}
		}
		w.state, w.lastErr = StateFailing, err
		now := t.clock.Now()
		if was != StateFailing && (w.failLog.IsZero() || now.Sub(w.failLog) >= logEvery) {
			w.failLog, w.logged = now, true
			w.log.Error().Err(err).Str("store", w.path).Uint64("failed_writes", w.failures).
				Msg("token store writes are failing; tokens are still served from memory but will not survive a restart")
		}
		return
	}
	w.state, w.lastErr = StateOK, nil
	switch {
	case was == StateFailing && w.logged: // the end of a failure that was logged
		w.logged = false
		w.log.Info().Str("store", w.path).Msg("token store writes work again")
	case was == StateStalled:
		w.log.Info().Str("store", w.path).Dur("took", t.clock.Now().Sub(start).Round(time.Millisecond)).Msg("the stalled token store write finished; the store answers again")
	}
}

// Close writes what is pending and closes the store. It waits at most
// five seconds of real time — not the engine's clock, which a test may
// never advance: it bounds a process's exit. A store that does not answer
// by then is left open (the process is ending) rather than hanging the
// shutdown.
func (w *Writer) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.done:
	case <-time.After(flushOnClose):
		w.mu.Lock()
		n := w.pendingLocked()
		w.mu.Unlock()
		w.log.Error().Str("store", w.path).Dur("waited", flushOnClose).Int("pending", n).
			Msg("the token store did not finish writing before shutdown; the last tokens are not stored (they will be fetched again after the restart)")
		return
	}
	w.mu.Lock()
	st := w.st
	w.st = nil
	w.mu.Unlock()
	if st != nil {
		st.Close()
	}
}

// Health is the store's state for status and /metrics.
func (w *Writer) Health() ipc.StoreHealth {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := ipc.StoreHealth{Path: w.path, State: w.state, Stalls: w.stalls, WriteFailures: w.failures, PendingWrites: len(w.puts) + len(w.deletes)}
	if w.lastErr != nil {
		h.Error = ipc.SafeText(w.lastErr.Error())
	}
	return h
}
