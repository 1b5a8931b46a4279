package agent

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

// The store is a cache: tokens are served from memory the moment the IdP
// answers, and one writer goroutine persists them afterwards. A disk that
// hangs, fills up, turns read-only or loses the file costs restarts their
// stored tokens, never a caller its token.
const (
	// storeStallAfter is how long a write may take before the store
	// counts as stalled (logged, on /metrics and in status).
	storeStallAfter = 5 * time.Second
	// storeCheckEvery is how often the writer checks that the file is
	// still there and, while the store is unavailable, tries to open it.
	storeCheckEvery = 30 * time.Second
	// storeFlushOnClose bounds the last writes at shutdown: a hung disk
	// does not hang the agent's exit.
	storeFlushOnClose = 5 * time.Second
	// storeLogEvery: failing writes are logged when they start, and again
	// no sooner than this after the last time, so that a disk that comes
	// and goes (a full disk that some writes still fit) does not flood
	// the log. Status and /metrics show every change.
	storeLogEvery = 10 * time.Minute
)

// Store states, as status and /metrics show them.
const (
	storeOK          = "ok"
	storeMemory      = "memory"      // store = "memory": nothing to persist
	storeFailing     = "failing"     // the last write failed
	storeStalled     = "stalled"     // a write has not returned for storeStallAfter
	storeUnavailable = "unavailable" // not open: failed at start, or its file went away
)

// StoreUnavailable reports whether err, from opening the store, is the
// disk's condition (read-only, full, failing) rather than a configuration
// mistake: then the agent can start with tokens in memory only, unless
// store_required is set.
func StoreUnavailable(err error) bool {
	for _, e := range []error{syscall.EROFS, syscall.ENOSPC, syscall.EDQUOT, syscall.EIO} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// persister keeps the store in step with the tokens, off the serving
// path: put and remove only note what to write and return.
type persister struct {
	a      *Agent
	path   string
	reopen func() (*store.Store, error) // nil: never reopened

	mu       sync.Mutex
	st       *store.Store // nil while unavailable
	puts     map[string]store.Record
	deletes  map[string]bool
	state    string
	lastErr  error
	stalls   uint64
	failures uint64
	detached bool      // logged that the file went away
	failLog  time.Time // when failing writes were last logged
	logged   bool      // failing writes were logged and their end is not yet

	wake       chan struct{}
	stopOnce   sync.Once
	stop       chan struct{}
	done       chan struct{}
	stallAfter time.Duration
	checkEvery time.Duration
}

func newPersister(a *Agent, path string, st *store.Store, openErr error, reopen func() (*store.Store, error)) *persister {
	p := &persister{a: a, path: path, reopen: reopen, st: st, state: storeOK,
		puts: map[string]store.Record{}, deletes: map[string]bool{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		stallAfter: storeStallAfter, checkEvery: storeCheckEvery}
	if st == nil {
		p.state, p.lastErr = storeUnavailable, openErr
	}
	return p
}

// put notes r to be written.
func (p *persister) put(r store.Record) {
	p.mu.Lock()
	p.puts[r.Profile] = r
	delete(p.deletes, r.Profile)
	p.mu.Unlock()
	p.signal()
	p.a.notify()
}

// remove notes profiles' records to be deleted.
func (p *persister) remove(profiles ...string) {
	if len(profiles) == 0 {
		return
	}
	p.mu.Lock()
	for _, name := range profiles {
		p.deletes[name] = true
		delete(p.puts, name)
	}
	p.mu.Unlock()
	p.signal()
	p.a.notify()
}

func (p *persister) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run is the writer: it writes what is pending whenever there is some,
// and checks the file every checkEvery, until close.
func (p *persister) run() {
	defer close(p.done)
	last := time.Now()
	for {
		check := time.NewTimer(time.Until(last.Add(p.timings().check)))
		select {
		case <-p.wake:
		case <-check.C:
			p.check()
			last = time.Now()
		case <-p.stop:
			check.Stop()
			p.flush()
			return
		}
		check.Stop()
		p.flush()
	}
}

func (p *persister) timings() (t struct{ stall, check time.Duration }) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t.stall, t.check = p.stallAfter, p.checkEvery
	return t
}

// check notices a store file that was deleted or replaced, and opens the
// store while it is unavailable.
func (p *persister) check() {
	defer p.a.notify()
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	if st != nil {
		gone, err := st.Detached()
		if err != nil || !gone {
			return
		}
		p.a.log.Error().Str("store", p.path).Msg("the token store file was deleted or replaced while the agent had it open; recreating it and writing the current tokens again")
		p.mu.Lock()
		p.st, p.state, p.lastErr, p.detached = nil, storeUnavailable, fmt.Errorf("store %s: the file was deleted or replaced", p.path), true
		p.mu.Unlock()
		st.Close()
	}
	if p.reopen == nil {
		return
	}
	st, err := p.reopen()
	if err != nil {
		p.mu.Lock()
		changed := p.lastErr == nil || p.lastErr.Error() != err.Error()
		p.lastErr = err
		p.mu.Unlock()
		if changed {
			p.a.log.Error().Err(err).Str("store", p.path).Dur("retry_in", p.timings().check).Msg("token store still unavailable; tokens are served from memory only and will not survive a restart")
		}
		return
	}
	p.a.adoptStore(st)
	p.mu.Lock()
	p.st, p.state, p.lastErr = st, storeOK, nil
	for _, r := range p.a.currentRecords() {
		if _, newer := p.puts[r.Profile]; !newer {
			p.puts[r.Profile] = r
		}
	}
	p.mu.Unlock()
	p.a.log.Info().Str("store", p.path).Msg("token store open again; current tokens are being written to it")
}

// flush writes everything pending in one transaction. A write that does
// not return within stallAfter marks the store stalled (logged once);
// a failed one puts its records back unless newer ones came meanwhile.
func (p *persister) flush() {
	defer p.a.notify()
	p.mu.Lock()
	st := p.st
	if st == nil || len(p.puts)+len(p.deletes) == 0 {
		p.mu.Unlock()
		return
	}
	if gone, _ := st.Detached(); gone {
		p.mu.Unlock()
		p.check()
		p.mu.Lock()
		if st = p.st; st == nil {
			p.mu.Unlock()
			return
		}
	}
	puts, deletes := p.puts, p.deletes
	p.puts, p.deletes = map[string]store.Record{}, map[string]bool{}
	p.mu.Unlock()

	start, stallAfter := time.Now(), p.timings().stall
	stalled := time.AfterFunc(stallAfter, func() {
		p.mu.Lock()
		p.state = storeStalled
		p.stalls++
		p.mu.Unlock()
		p.a.notify()
		p.a.log.Error().Str("store", p.path).Dur("waited", stallAfter).
			Msg("a token store write has not finished: the disk may be hung or frozen; tokens are still served from memory, and new ones are written when it answers")
	})
	err := st.Apply(slices.Collect(maps.Values(puts)), slices.Collect(maps.Keys(deletes)))
	stalled.Stop()

	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.state
	if err != nil {
		p.failures++
		for name, r := range puts {
			if _, newer := p.puts[name]; !newer && !p.deletes[name] {
				p.puts[name] = r
			}
		}
		for name := range deletes {
			if _, newer := p.puts[name]; !newer {
				p.deletes[name] = true
			}
		}
		p.state, p.lastErr = storeFailing, err
		if was != storeFailing && (p.failLog.IsZero() || time.Since(p.failLog) >= storeLogEvery) {
			p.failLog, p.logged = time.Now(), true
			p.a.log.Error().Err(err).Str("store", p.path).Uint64("failed_writes", p.failures).
				Msg("token store writes are failing; tokens are still served from memory but will not survive a restart")
		}
		return
	}
	p.state, p.lastErr = storeOK, nil
	switch {
	case was == storeFailing && p.logged: // the end of a failure that was logged
		p.logged = false
		p.a.log.Info().Str("store", p.path).Msg("token store writes work again")
	case was == storeStalled:
		p.a.log.Info().Str("store", p.path).Dur("took", time.Since(start).Round(time.Millisecond)).Msg("the stalled token store write finished; the store answers again")
	}
}

// close writes what is pending, waiting at most storeFlushOnClose, and
// closes the store. A store that does not answer is left open (the
// process is ending) rather than hanging the shutdown.
func (p *persister) close() {
	p.stopOnce.Do(func() { close(p.stop) })
	select {
	case <-p.done:
	case <-time.After(storeFlushOnClose):
		p.mu.Lock()
		n := len(p.puts) + len(p.deletes)
		p.mu.Unlock()
		p.a.log.Error().Str("store", p.path).Dur("waited", storeFlushOnClose).Int("pending", n).
			Msg("the token store did not finish writing before shutdown; the last tokens are not stored (they will be fetched again after the restart)")
		return
	}
	p.mu.Lock()
	st := p.st
	p.st = nil
	p.mu.Unlock()
	if st != nil {
		st.Close()
	}
}

// health is the store's state for status and /metrics.
func (p *persister) health() ipc.StoreHealth {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := ipc.StoreHealth{Path: p.path, State: p.state, Stalls: p.stalls, WriteFailures: p.failures, PendingWrites: len(p.puts) + len(p.deletes)}
	if p.lastErr != nil {
		h.Error = ipc.SafeText(p.lastErr.Error())
	}
	return h
}
