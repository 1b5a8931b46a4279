package fleet

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/ipc"
)

// Clock is the coordinator's time: the engine's clock, so that probes run
// on simulated time in tests.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// Config is what a Coordinator needs to know about its profile.
type Config struct {
	Backend     Backend
	Fingerprint string // what the profile's tokens are for: the record's name
	Credential  string // tags the client credential in shared refusals (a hash prefix)
	Host        string // this host's name in the records it writes
	// FetchTimeout bounds the wait for another host's fetch (the lock).
	FetchTimeout time.Duration
	// PermanentBackoff is how long a shared refusal holds the others.
	PermanentBackoff time.Duration
	Clock            Clock
	Log              zerolog.Logger
}

// Stats counts a profile's work through the fleet (see ipc.FleetStats:
// one type from the coordinator to status and /metrics).
type Stats = ipc.FleetStats

// Origin says where the token of a Fetch came from.
type Origin int

const (
	// Alone: this host fetched for itself (the fleet is down, its seal
	// key is another, or the lock's holder was slow).
	Alone Origin = iota
	// Shared: this host fetched holding the lock, and shared the result.
	Shared
	// Fleet: another host's token, installed through Profile.Adopt, or
	// its refusal, through Profile.Refused; the IdP was not asked.
	Fleet
)

// RetryAfter is how long a profile fetches for this host alone after the
// fleet failed it, before asking the fleet again: an unreachable backend
// costs a fetch at most one operation timeout now and then, not on every
// fetch (static stability). Meanwhile a probe reads the fleet at this
// pace, so that the profile rejoins (and takes the fleet's token) within
// it of the backend's return, not at its next fetch.
const RetryAfter = 10 * time.Second

// watchRetry spaces the attempts to start a watch the backend refused.
const watchRetry = time.Second

// errLockWait: the wait for the lock's holder outlasted fetch_timeout.
var errLockWait = errors.New("fleet: the lock's holder did not finish within fetch_timeout")

// Coordinator shares one profile's token stream with the other hosts:
// read → lock → re-read → fetch → share, a watch that installs the
// tokens other hosts fetch, shared permanent refusals, and fetching alone
// (logged once per change) while the backend is down, with a probe that
// rejoins. There is one per profile that takes part, not one per
// fingerprint: it lives and dies with the profile's source (a reload that
// changes a profile replaces both), and the credential its refusals are
// matched against and the reload that forgets them are the profile's.
// Two profiles of one host with one fingerprint (rare) each watch it, on
// the backend's one connection.
type Coordinator struct {
	cfg  Config
	prof Profile

	watched chan struct{} // closed once the first attempt to watch ended

	mu        sync.Mutex
	ctx       context.Context
	cancel    context.CancelFunc
	stats     Stats
	arrived   chan struct{} // closed, and replaced, when Adopt installs a token
	down      bool          // the backend failed; logged once, until a write succeeds
	wrongKey  bool          // ... because this host's seal key is not the fleet's
	readable  bool          // ... but it answers reads: writes are refused or unproven
	junk      bool          // a record that does not open was logged
	seen      uint64        // the highest generation of the fingerprint's records seen
	stale     bool          // a record older than seen was logged
	rejected  [][32]byte    // SHA-256 of tokens reported rejected here, newest last
	retry     time.Time     // while down, not asked again before this
	stopProbe func() bool   // ends the pending probe
	forgot    time.Time     // refusals from before this are not held (a reload)
	refusal   time.Time     // when the refusal last logged was made
	closed    bool
}

// New makes prof's coordinator; Start begins its watch.
func New(cfg Config, prof Profile) *Coordinator {
	return &Coordinator{cfg: cfg, prof: prof, watched: make(chan struct{}), arrived: make(chan struct{})}
}

// Start watches the fingerprint on ctx, which also bounds every other
// operation, until Close.
func (c *Coordinator) Start(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx != nil || c.closed {
		return
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	go c.watch(c.ctx)
}

// Watched is closed once the first attempt to watch the fingerprint has
// ended: the watch is registered, or it failed (Status then says the
// fleet is unavailable).
func (c *Coordinator) Watched() <-chan struct{} { return c.watched }

// Close ends the watch and the probe.
func (c *Coordinator) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cancel != nil {
		c.cancel()
	}
	if c.stopProbe != nil {
		c.stopProbe()
		c.stopProbe = nil
	}
}

// Forget makes the refusals shared before now no longer hold the profile:
// a reload, after which the operator may have fixed the credential.
func (c *Coordinator) Forget() {
	c.mu.Lock()
	c.forgot = c.cfg.Clock.Now()
	c.mu.Unlock()
}

// Status is the profile's part in the fleet: "fleet", "fleet unavailable",
// "fleet unavailable: reads only" (etcd answers reads but has refused
// writes since: its NOSPACE alarm, say) or "local: wrong seal_key", and
// its counters.
func (c *Coordinator) Status() (state string, stats Stats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.down && c.wrongKey:
		state = "local: wrong seal_key"
	case c.down && c.readable:
		state = "fleet unavailable: reads only"
	case c.down:
		state = "fleet unavailable"
	default:
		state = "fleet"
	}
	return state, c.stats
}

// Fetch gets the profile a token through the fleet: another host's when
// it is usable (installed through Profile.Adopt: Fleet), or, holding the
// fingerprint's lock, from fetch, whose token it shares (Shared), as it
// shares a permanent refusal; with the backend in trouble, or the lock's
// holder slow, from fetch alone (Alone). A refusal another host shared
// for this credential is Fleet with the error of Profile.Refused. The
// error is fetch's otherwise.
func (c *Coordinator) Fetch(ctx context.Context, fetch func(context.Context) (Record, error)) (Origin, error) {
	unlock, origin, err, done := c.turn(ctx)
	if done {
		return origin, err
	}
	if unlock == nil {
		c.count(func(s *Stats) { s.Fallbacks++ }) // the fetch is for this host alone
		_, err := fetch(ctx)
		return Alone, err
	}
	defer unlock()
	r, err := fetch(ctx)
	if err != nil {
		c.shareRefusal(ctx, err)
		return Shared, err
	}
	r.MintedBy, r.Generation = c.cfg.Host, c.nextGeneration()
	if err := c.cfg.Backend.Put(ctx, c.cfg.Fingerprint, r); err != nil { // before the lock is released
		c.trouble(err)
	} else {
		c.count(func(s *Stats) { s.Mints++ })
		c.back()
	}
	return Shared, nil
}

// turn is the fleet's part of a fetch before the IdP: read the record;
// failing that, take the lock and read again. A token the watch installs
// while the fetch waits for the lock serves it as well. done: the fetch is
// over (origin, err); else unlock is set when this host fetches holding
// the lock, nil when it fetches alone.
func (c *Coordinator) turn(ctx context.Context) (unlock func(), origin Origin, err error, done bool) {
	c.mu.Lock()
	arrived, started := c.arrived, c.ctx != nil
	c.mu.Unlock()
	if !c.usable() {
		return nil, Alone, nil, false
	}
	// The watch is registered before the first read, so that a record
	// written after it arrives by watch: waiting for the lock needs no
	// polling. Bounded by the backend's operation timeout; a watch that
	// could not be registered marks the backend down.
	if started {
		select {
		case <-c.watched:
		case <-ctx.Done():
			return nil, Alone, ctx.Err(), true
		}
		if !c.usable() {
			return nil, Alone, nil, false
		}
	}
	if origin, err, done := c.read(ctx); done {
		return nil, origin, err, true
	}
	if !c.usable() { // the read found the backend down
		return nil, Alone, nil, false
	}
	c.count(func(s *Stats) { s.LockWaits++ })
	unlock, err = c.lock(ctx, arrived)
	isArrived := func() bool {
		select {
		case <-arrived:
			return true
		default:
			return false
		}
	}
	switch {
	case err == nil:
		if isArrived() {
			unlock()
			return nil, Fleet, nil, true
		}
		if origin, err, done := c.read(ctx); done {
			unlock()
			return nil, origin, err, true
		}
		return unlock, Shared, nil, false
	case isArrived():
		return nil, Fleet, nil, true
	case errors.Is(err, errLockWait):
		if origin, err, done := c.read(ctx); done { // the holder finished after all
			return nil, origin, err, true
		}
		// Alive, as its lease says, but slow (a hung IdP connection, say):
		// the fleet stays in use.
		c.cfg.Log.Warn().Err(err).Msg("the fleet's lock holder is slow; fetching for this host")
	default:
		c.trouble(err)
	}
	return nil, Alone, nil, false
}

// lock takes the fingerprint's lock for a fetch. It waits at most
// fetch_timeout (a live holder's fetch takes no longer; a dead holder's
// lock is gone within the backend's lock TTL), and stops waiting when
// the watch installs a token meanwhile (arrived closes). A wait that
// times out is no fault of the fleet's (errLockWait): the holder is slow.
func (c *Coordinator) lock(ctx context.Context, arrived <-chan struct{}) (unlock func(), err error) {
	lctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	go func() {
		select {
		case <-arrived:
			cancel()
		case <-lctx.Done():
		}
	}()
	unlock, err = c.cfg.Backend.Lock(lctx, c.cfg.Fingerprint)
	if err == nil {
		return unlock, nil
	}
	if lctx.Err() != nil && ctx.Err() == nil {
		select {
		case <-arrived:
			return nil, err
		default:
			return nil, errLockWait
		}
	}
	return nil, err
}

// read installs the fleet's token when the profile takes it (done,
// Fleet). Failing that, a permanent refusal another host recorded for
// this credential holds this host off the IdP too (done, Fleet, the
// profile's error). Not done: there is nothing to use, or the backend
// could not be read (then this host fetches for itself).
func (c *Coordinator) read(ctx context.Context) (origin Origin, err error, done bool) {
	c.count(func(s *Stats) { s.Reads++ })
	r, ok, err := c.cfg.Backend.Get(ctx, c.cfg.Fingerprint)
	junk := errors.Is(err, ErrTampered)
	if err != nil && !junk {
		c.mu.Lock()
		c.readable = false
		c.mu.Unlock()
		c.trouble(err)
		return Alone, nil, false
	}
	c.mu.Lock()
	if c.down {
		// Answered (so the pinned key id is this host's), but the fleet is
		// back only once a write succeeds (back): with etcd's NOSPACE alarm
		// raised every read works and every write fails.
		c.readable, c.wrongKey = true, false
	}
	first := junk && !c.junk
	c.junk = junk || c.junk && !ok
	c.mu.Unlock()
	if junk {
		// Junk: not served, and not a reason to stop sharing (only the
		// pinned key id is): this host, under the lock, writes a good
		// record over it. Logged once until the fleet's record opens again.
		if first {
			c.cfg.Log.Error().Err(err).Msg("the fleet's record for this profile does not open under the fleet's seal key (written under another key id, altered in etcd, or copied from another fingerprint); ignored, and replaced by this host's next fetch under the lock; if it comes back, check who writes to the fleet's etcd prefix")
		}
		return Alone, nil, false
	}
	if !ok || !c.current(r) {
		return Alone, nil, false
	}
	if c.adopt(r) {
		return Fleet, nil, true
	}
	if err := c.refused(r); err != nil {
		return Fleet, err, true
	}
	return Alone, nil, false
}

// maxRejected bounds the tokens remembered as rejected: one is added per
// forced refresh, at most one per 10 s.
const maxRejected = 16

// adopt offers r to the profile and counts and signals a token installed.
func (c *Coordinator) adopt(r Record) bool {
	if !c.prof.Adopt(r) {
		return false
	}
	c.mu.Lock()
	c.stats.Hits++
	close(c.arrived) // a fetch waiting for the lock has its token
	c.arrived = make(chan struct{})
	c.mu.Unlock()
	return true
}

// count updates the stats under the coordinator's lock.
func (c *Coordinator) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}
