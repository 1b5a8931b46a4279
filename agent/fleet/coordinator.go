package fleet

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/idp"
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
	down      bool          // the backend failed; logged once
	wrongKey  bool          // ... because this host's seal key is not the fleet's
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

// Status is the profile's part in the fleet: "fleet", "fleet unavailable"
// or "local: wrong seal_key", and its counters.
func (c *Coordinator) Status() (state string, stats Stats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.down && c.wrongKey:
		state = "local: wrong seal_key"
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
	if errors.Is(err, ErrTampered) {
		// Junk: not served, and not a reason to stop sharing (only the
		// pinned key id is): this host, under the lock, writes a good
		// record over it. Logged once until the fleet's record opens again.
		c.mu.Lock()
		first := !c.junk
		c.junk = true
		c.mu.Unlock()
		if first {
			c.cfg.Log.Error().Err(err).Msg("the fleet's record for this profile does not open under the fleet's seal key (written under another key id, altered in etcd, or copied from another fingerprint); ignored, and replaced by this host's next fetch under the lock; if it comes back, check who writes to the fleet's etcd prefix")
		}
		return Alone, nil, false
	}
	if err != nil {
		c.trouble(err)
		return Alone, nil, false
	}
	c.mu.Lock()
	if ok {
		c.junk = false
	}
	if c.down {
		c.down, c.wrongKey = false, false
		c.cfg.Log.Info().Msg("fleet available again; sharing tokens with the other hosts")
	}
	c.mu.Unlock()
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

// Rejected says that an API refused the token with SHA-256 sum, reported
// on this host: a record of that token is never taken from the fleet
// again (put back into etcd, it would be served until it expires).
func (c *Coordinator) Rejected(sum [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.rejected {
		if r == sum {
			return
		}
	}
	if len(c.rejected) == maxRejected {
		c.rejected = c.rejected[1:]
	}
	c.rejected = append(c.rejected, sum)
}

// current reports whether r, a record that opened, may be offered to the
// profile: not older than a generation this host has seen (a replay of
// an older record, put back into etcd by someone with write access), and
// not a token reported rejected here. Replays are logged once until a
// current record arrives; the fetch under the lock overwrites them.
func (c *Coordinator) current(r Record) bool {
	sum := sha256.Sum256([]byte(r.AccessToken))
	c.mu.Lock()
	older := r.Generation < c.seen
	rejected := false
	for _, s := range c.rejected {
		rejected = rejected || r.AccessToken != "" && s == sum
	}
	if !older {
		c.seen = r.Generation
	}
	first := (older || rejected) && !c.stale
	c.stale = older || rejected
	seen := c.seen
	c.mu.Unlock()
	if first {
		c.cfg.Log.Warn().Uint64("generation", r.Generation).Uint64("seen_generation", seen).Bool("rejected_token", rejected).Str("minted_by", ipc.SafeText(r.MintedBy)).
			Msg("the fleet's record for this profile is older than one this host has seen, or holds a token reported rejected here: an older record put back into etcd; ignored, and replaced by this host's next fetch under the lock; check who writes to the fleet's etcd prefix")
	}
	return !older && !rejected
}

// nextGeneration is the generation of a record this host writes: one
// more than the highest it has seen (the read under the lock saw the
// newest, unless it was a replay).
func (c *Coordinator) nextGeneration() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen++
	return c.seen
}

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

// refused holds the profile off the IdP until the record's failure ends,
// when it is a refusal of this host's credential made since the last
// reload; nil otherwise.
func (c *Coordinator) refused(r Record) error {
	f := r.Failure
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	if f == nil || f.Credential != c.cfg.Credential || !f.Until.After(now) || f.At.Before(c.forgot) {
		c.mu.Unlock()
		return nil
	}
	first := !c.refusal.Equal(f.At)
	c.refusal = f.At
	c.mu.Unlock()
	host := ipc.SafeText(r.MintedBy) // another host's text: shown and logged as text
	err := fmt.Errorf("%w (refused to host %s; shared through the fleet)", &idp.Error{
		Endpoint: f.Endpoint, StatusCode: f.Status, Code: f.Code, Description: f.Description,
	}, host)
	held := c.prof.Refused(err, f.Until)
	if held != nil && first {
		c.cfg.Log.Warn().Str("refused_host", host).Str("idp_error", f.Code).Int("status", f.Status).Time("until", f.Until).
			Msg("the IdP refused this client to another host of the fleet; not asking it until then (fix the credential, then reload)")
	}
	return held
}

// shareRefusal shares a permanent refusal this host got, so that the
// other hosts with the same credential hold off the IdP for
// permanent_backoff instead of each learning it for itself. The record
// keeps the token held, if any.
func (c *Coordinator) shareRefusal(ctx context.Context, err error) {
	var ie *idp.Error
	if !errors.As(err, &ie) || ie.Transient {
		return
	}
	at := c.cfg.Clock.Now()
	r, _ := c.prof.Held()
	r.MintedBy, r.Generation, r.Failure = c.cfg.Host, c.nextGeneration(), &Failure{
		Endpoint: ie.Endpoint, Status: ie.StatusCode, Code: ie.Code, Description: ie.Description,
		At: at, Until: at.Add(c.cfg.PermanentBackoff), Credential: c.cfg.Credential,
	}
	if err := c.cfg.Backend.Put(ctx, c.cfg.Fingerprint, r); err != nil {
		c.trouble(err)
	}
}

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

// count updates the stats under the coordinator's lock.
func (c *Coordinator) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}
