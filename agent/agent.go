// Package agent is tokenagent's engine: it turns a configuration into one
// token source per profile, and hands out OAuth 2.0 client-credentials
// tokens that are fetched once per burst of demand (singleflight),
// refreshed before they expire, and kept while the identity provider
// fails.
//
// # Basics
//
// Load a config.Config (secretref.LoadConfig), create an Agent (New) and ask it for tokens
// (Agent.Token). Every fetch runs on the agent's own context with the
// profile's fetch_timeout, so a caller that gives up never cancels the
// fetch other callers wait for. Close stops all timers and in-flight
// fetches.
//
// # Refresh policy
//
// A token is refreshed in the background at refresh_at (default 0.75) of
// its lifetime, ±5 % jitter, and never later than min_valid before expiry.
// Lifetimes are measured from when the request was sent. A profile nobody
// asked for in idle_after stops refreshing until it is asked again.
//
// # Failures
//
// Transient failures (network, timeout, 5xx, 429, unreadable answers) are
// retried with exponential backoff and full jitter, honouring Retry-After.
// Permanent ones (invalid_client, invalid_scope, …) are returned to every
// caller at once and the IdP is asked again only after permanent_backoff.
// In both cases a token that is still valid keeps being served.
//
// # Caveats
//
// Tokens are compared against the wall clock on every use, so a suspended
// machine never serves an expired token; the refresh timer, which runs on
// the monotonic clock, is re-armed by the first request after a wake-up.
package agent

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/agent/persist"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

// errSourceClosed: the profile's source was closed while a caller used
// it — by a reload that replaced it (the caller tries its successor) or
// by Close.
var errSourceClosed = errors.New("profile source closed")

// Options are the agent's collaborators; the zero value is production.
type Options struct {
	// Clock is the time source; nil means the system clock.
	Clock Clock
	// Logger receives one event per fetch, failure and state change; nil
	// means no logging.
	Logger *zerolog.Logger
	// HTTPClient talks to identity providers; nil means a client that
	// never follows redirects.
	HTTPClient *http.Client
	// Rand returns uniform numbers in [0, 1) for jitter; nil means
	// math/rand/v2. It must be safe for concurrent use.
	Rand func() float64
	// Fleet, when set, shares tokens with other hosts' agents (package
	// fleet); nil keeps them to this host.
	Fleet Fleet
}

// Agent serves tokens for the profiles of one configuration.
type Agent struct {
	uid    uint32 // the agent's own user, allowed every profile
	ctx    context.Context
	cancel context.CancelFunc
	clock  Clock
	log    zerolog.Logger
	rand   func() float64

	sources    atomic.Pointer[map[string]*source]
	reloadMu   sync.Mutex // one Reload at a time
	httpClient *http.Client

	// fetching is held shared by every fetch in flight; Close takes it
	// exclusively so that it returns only when no fetch can still write
	// to the store.
	fetching sync.RWMutex
	closed   bool // guarded by fetching

	persister *persist.Writer // nil with store = "memory"

	fleet    Fleet  // nil without [fleet]
	hostname string // names this host in fleet records

	doors atomic.Pointer[doorIndex] // what the token doors match against (doors.go)

	meters atomic.Pointer[meters] // the budgets of IdP requests (budget.go), replaced by Reload

	// changed is closed, and replaced, whenever a fetch ends or the
	// store's state may have changed: whoever needs to see such a change
	// waits on it rather than polling (see stateChanged).
	changed atomic.Pointer[chan struct{}]
}

// stateChanged returns a channel closed at the next fetch's end or store
// state change. Read the state after taking it, so that no change is
// missed between the two.
func (a *Agent) stateChanged() <-chan struct{} { return *a.changed.Load() }

// Changed returns a channel closed at the next change of the agent's
// state: a fetch ended, a token arrived from the fleet, the store's state
// changed. Read the state after taking it, so that no change is missed.
func (a *Agent) Changed() <-chan struct{} { return a.stateChanged() }

// notify wakes those waiting in stateChanged.
func (a *Agent) notify() {
	ch := make(chan struct{})
	close(*a.changed.Swap(&ch))
}

// ProfileStatus is what the agent knows about a profile, for status
// displays and metrics. It never holds a token or a secret.
type ProfileStatus struct {
	// ProfileInfo is what a caller may be told (GET /v1/profiles), filled
	// in one place (source.status): a new status field is added there and
	// to ipc.ProfileInfo, and every door shows it. Its times are UTC.
	ipc.ProfileInfo
	// RefreshAt is when the held token is refreshed; zero when none is.
	RefreshAt time.Time
	// ClockSkew is the last token's JWT exp minus its expiry by the
	// IdP's expires_in on this host's clock, when that exceeds 30 s (the
	// two clocks disagree; the earlier expiry is used); else 0.
	ClockSkew time.Duration
	// FleetStats counts what the profile did through the fleet.
	FleetStats FleetStats

	// Counters since start (or since the profile last changed).
	Results   map[string]uint64 // IdP requests by result: "ok", the IdP's code, "http_NNN", "timeout", "network"
	Latency   Histogram         // of IdP requests
	Minted    uint64            // tokens obtained from the IdP
	Coalesced uint64            // callers that waited on a fetch another caller started
	Served    uint64            // tokens handed to callers
}

// FleetHost is the name this agent gives itself in the fleet: [fleet]
// host, else the host name (resolved here, at start-up, not by the
// configuration).
func FleetHost(cfg *config.Config) string {
	if h := cfg.FleetHost(); h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

// Open builds an agent for cfg, as New does, with the token store the
// configuration names (none for store = "memory"). The store is a cache:
// a disk that is read-only, full or failing leaves the agent serving from
// memory, logged loudly and shown in StoreHealth, while it keeps trying to
// open it, unless store_required is set. A configuration mistake (a wrong
// key, a path that is not a file) fails either way. Open opens nothing
// else: the fleet (OpenFleet) and the doors are the caller's. Profiles
// with file sinks are kept current from here on with no caller: a stored
// token is written and its refresh armed, or one is fetched in the
// background (see source.demand); the others wait for their first request.
func Open(cfg *config.Config, opts Options) (*Agent, error) {
	st, storeErr := OpenStore(cfg)
	if storeErr != nil && (cfg.StoreRequired || !StoreUnavailable(storeErr)) {
		if cfg.StoreRequired && StoreUnavailable(storeErr) {
			return nil, fmt.Errorf("%w (store_required = true in %s; without it the agent would serve from memory and keep trying)", storeErr, cfg.Path())
		}
		return nil, storeErr
	}
	a, err := New(cfg, opts)
	if err != nil {
		if st != nil {
			st.Close()
		}
		return nil, err
	}
	if st == nil && storeErr == nil {
		a.startDemand()
		return a, nil // store = "memory"
	}
	a.persister = persist.New(persist.Options{Path: cfg.StorePath(), Store: st, OpenErr: storeErr,
		Reopen: func() (*store.Store, error) { return OpenStore(cfg) },
		Adopt:  a.adoptAgain, Changed: a.notify, Clock: a.clock, Logger: &a.log})
	if st != nil {
		a.adoptStore(st)
	} else {
		a.log.Error().Err(storeErr).Str("store", cfg.StorePath()).Dur("retry_in", a.persister.CheckEvery()).
			Msg("cannot open the token store; serving tokens from memory only (they will not survive a restart) and trying again")
	}
	go a.persister.Run()
	a.startDemand()
	return a, nil
}

// startDemand starts keeping every profile with file sinks current (see
// source.demand): their files are written and refreshed with no caller.
// Open calls it once the store's tokens are adopted; New does not, so
// that building an agent (check-config) makes no network request.
func (a *Agent) startDemand() {
	for _, s := range *a.sources.Load() {
		s.demand()
	}
}

// New builds an agent for cfg that keeps its tokens in memory only,
// whatever the configuration's store (Open opens it): it reads every
// profile's secrets and keys and fails, naming the profile and key, if
// any cannot be used. It makes no network requests; tokens are fetched on
// first demand.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	a := &Agent{uid: uint32(os.Geteuid()), clock: opts.Clock, rand: opts.Rand, log: zerolog.Nop(), httpClient: opts.HTTPClient, fleet: opts.Fleet}
	a.hostname = FleetHost(cfg)
	if a.clock == nil {
		a.clock = SystemClock{}
	}
	changed := make(chan struct{})
	a.changed.Store(&changed)
	if a.rand == nil {
		a.rand = rand.Float64
	}
	if opts.Logger != nil {
		a.log = *opts.Logger
	}
	built, err := buildProfiles(cfg, opts.HTTPClient, a.clock.Now)
	if err != nil {
		return nil, err
	}
	sources := make(map[string]*source, len(built))
	for name, p := range built {
		sources[name] = newSource(a, p)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.meters.Store(a.newMeters(cfg, built, nil))
	a.sources.Store(&sources)
	for _, s := range sources {
		s.watchFleet()
	}
	return a, nil
}

// Token returns a token for profile with at least minValid left (never
// less than the profile's min_valid), if caller may use the profile. A
// cached token is returned at once; otherwise the caller joins the single
// fetch in flight. ctx bounds only this caller's wait.
//
// Every error is an *ipc.Error whose Kind is one of ipc's sentinels:
// ErrUnknownProfile (also for a profile the caller may not use), ErrMinValid, ErrIdPRefused (with the
// IdP's code and the *idp.Error as cause), ErrIdPUnavailable (with
// RetryAfter), ErrShuttingDown or ErrTimeout.
func (a *Agent) Token(ctx context.Context, caller ipc.Caller, profile string, minValid time.Duration) (*Token, error) {
	return a.onSource(caller, profile, minValid, func(s *source, minValid time.Duration) (*Token, error) {
		return s.token(ctx, minValid)
	})
}

// ReportRejected tells the agent that an API refused the token whose
// SHA-256 is rejectedSHA256 (hex, see ipc.TokenSHA256). If that is still
// the current token, it is dropped and one new token is fetched, however
// many callers report it; otherwise the current token is returned without
// asking the IdP. Errors are as for Token, plus ErrBadRequest for a
// report that is not a SHA-256.
func (a *Agent) ReportRejected(ctx context.Context, caller ipc.Caller, profile, rejectedSHA256 string, minValid time.Duration) (*Token, error) {
	var sum [32]byte
	b, err := hex.DecodeString(rejectedSHA256)
	if err == nil && len(b) == len(sum) {
		copy(sum[:], b)
	}
	return a.onSource(caller, profile, minValid, func(s *source, minValid time.Duration) (*Token, error) {
		if err != nil || len(b) != len(sum) {
			return nil, ipc.Errorf(ipc.ErrBadRequest, "rejected_sha256 must be 64 hex digits")
		}
		return s.reject(ctx, sum, minValid)
	})
}

// onSource looks the profile up for caller and runs op on its source with
// the effective min_valid (never below the profile's). When a reload
// replaced the source while op waited, op runs once more on the successor,
// looked up — access included — afresh.
func (a *Agent) onSource(caller ipc.Caller, profile string, minValid time.Duration, op func(*source, time.Duration) (*Token, error)) (*Token, error) {
	s, err := a.lookup(caller, profile)
	if err != nil {
		return nil, err
	}
	tok, err := op(s, max(minValid, s.prof.timing.MinValid.Duration))
	if errors.Is(err, errSourceClosed) && a.ctx.Err() == nil {
		if s, err = a.lookup(caller, profile); err != nil {
			return nil, err
		}
		tok, err = op(s, max(minValid, s.prof.timing.MinValid.Duration))
	}
	if err != nil {
		return nil, a.publicError(profile, err)
	}
	s.stats.served.Add(1)
	return tok, nil
}

// lookup finds the profile and checks that caller may use it, in one step
// on one snapshot of the profiles: a reload cannot slip in between.
func (a *Agent) lookup(caller ipc.Caller, profile string) (*source, error) {
	s := (*a.sources.Load())[profile]
	if s == nil && (caller.UID == 0 || caller.UID == a.uid) {
		return nil, ipc.Errorf(ipc.ErrUnknownProfile, fmt.Sprintf("no profile %q is configured", profile))
	}
	var rule, why string
	if s != nil {
		rule, why = s.prof.access.decide(caller, a.uid)
	}
	if rule == "" {
		// The same answer whether the profile is missing or not theirs, in
		// process and over the socket, so that nobody can list the profile
		// names by guessing; Denied tells the audit log which it was, Why
		// the log which rule refused the caller.
		return nil, &ipc.Error{Kind: ipc.ErrUnknownProfile, Denied: s != nil, Why: why, Description: fmt.Sprintf(
			"no profile %q for uid %d: it is not configured, or its allow rules (allow_users, allow_groups, allow_uids, allow_gids, [[allow]]) do not admit you", profile, caller.UID)}
	}
	s.callers.saw(caller, rule, a.clock.Now())
	return s, nil
}

// publicError gives an engine error its kind from ipc's vocabulary and
// names the profile: a held or fresh permanent IdP error is
// ErrIdPRefused with the IdP's code, any other fetch failure
// ErrIdPUnavailable with when the IdP is asked again.
func (a *Agent) publicError(profile string, err error) error {
	var e *ipc.Error
	if errors.As(err, &e) {
		return e
	}
	msg := fmt.Sprintf("profile %q: %v", profile, err)
	var ie *idp.Error
	switch {
	case errors.Is(err, errSourceClosed), a.ctx.Err() != nil:
		return &ipc.Error{Kind: ipc.ErrShuttingDown, Description: "the agent is shutting down", Err: err}
	case errors.As(err, &ie) && !ie.Transient:
		return &ipc.Error{Kind: ipc.ErrIdPRefused, Code: cmp.Or(ie.Code, ipc.CodeIdPError), Description: msg, RetryAfter: retryIn(err), Err: err}
	case errors.As(err, &ie): // fetch_timeout included: the IdP was slow, not the caller impatient
		return &ipc.Error{Kind: ipc.ErrIdPUnavailable, Description: msg, RetryAfter: retryIn(err), Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &ipc.Error{Kind: ipc.ErrTimeout, Description: fmt.Sprintf("profile %q: no token before the request's deadline", profile), Err: err}
	}
	return &ipc.Error{Kind: ipc.ErrIdPUnavailable, Description: msg, RetryAfter: retryIn(err), Err: err}
}

// retryIn is how long the source holds off the IdP; 0 when it does not.
func retryIn(err error) time.Duration {
	var he *holdError
	if errors.As(err, &he) {
		return he.wait
	}
	return 0
}

// Status reports every profile, sorted by name.
func (a *Agent) Status() []ProfileStatus {
	return a.status(func(*source) bool { return true })
}

// Profiles reports the profiles caller may use, sorted by name.
func (a *Agent) Profiles(caller ipc.Caller) []ProfileStatus {
	return a.status(func(s *source) bool { return s.prof.access.allows(caller, a.uid) })
}

func (a *Agent) status(visible func(*source) bool) []ProfileStatus {
	sources := *a.sources.Load()
	now := a.clock.Now()
	out := make([]ProfileStatus, 0, len(sources))
	for _, s := range sources {
		if visible(s) {
			out = append(out, s.status(now))
		}
	}
	slices.SortFunc(out, func(x, y ProfileStatus) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Close stops refresh timers, cancels fetches in flight and waits for them
// to end, then writes what the store still lacks (for a few seconds at
// most) and closes it.
func (a *Agent) Close() error {
	a.cancel()
	for _, s := range *a.sources.Load() {
		s.close()
	}
	a.fetching.Lock()
	a.closed = true
	a.fetching.Unlock()
	if a.persister != nil {
		a.persister.Close()
	}
	return nil
}

// StopFetching ends the wait of every caller who has no valid token:
// fetches in flight are cancelled and no new one starts, so that they are
// answered ErrShuttingDown at once. Tokens held are still served. The
// daemon calls it when its shutdown grace has run out, before it cuts the
// doors' connections; Close must still follow.
func (a *Agent) StopFetching() { a.cancel() }

// beginFetch registers a fetch in flight; false once the agent is closed
// or stopping.
func (a *Agent) beginFetch() bool {
	a.fetching.RLock()
	if a.closed || a.ctx.Err() != nil {
		a.fetching.RUnlock()
		return false
	}
	return true
}

func (a *Agent) endFetch() { a.fetching.RUnlock() }
