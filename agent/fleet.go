package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/ipc"
)

// Fleet is where agents on many hosts share tokens (package fleet's Etcd
// is one); another store (a Kubernetes Lease and Secret, Redis) could
// follow behind the same interface.
type Fleet interface {
	// Get returns the fingerprint's record (ok false: none).
	Get(ctx context.Context, fingerprint string) (r fleet.Record, ok bool, err error)
	// Put writes the fingerprint's record.
	Put(ctx context.Context, fingerprint string, r fleet.Record) error
	// Lock takes the fingerprint's lock, waiting until ctx ends; a host
	// that dies holding it loses it within seconds.
	Lock(ctx context.Context, fingerprint string) (unlock func(), err error)
	// Watch sends the records written for the fingerprint from now on,
	// until ctx ends.
	Watch(ctx context.Context, fingerprint string) <-chan fleet.Record
}

// fleetTurn is what the fleet says about a fetch: it is over (token, or
// the fleet's hold on a refused credential), or this host fetches holding
// the fingerprint's lock (unlock set: it shares what it gets, then
// unlocks), or for itself alone (all nil).
type fleetTurn struct {
	token  *cached
	hold   error
	unlock func()
}

// fleetFirst is the fleet's part of a fetch: read the record; failing
// that, take the lock and read again. A token the watch installs while
// the fetch waits for the lock serves it as well.
func (s *source) fleetFirst() (turn fleetTurn) {
	defer func() {
		if turn.token == nil && turn.hold == nil && turn.unlock == nil {
			s.mu.Lock()
			s.fleetStats.Fallbacks++ // the fetch is for this host alone
			s.mu.Unlock()
		}
	}()
	if !s.fleetUsable() {
		return turn
	}
	held := s.cur.Load()
	arrived := func() *cached {
		c := s.cur.Load()
		if now, mono := readClock(s.agent.clock); c != nil && c != held && !c.due(now, mono) {
			return c
		}
		return nil
	}
	read := func() (fleetTurn, bool) {
		c, hold := s.fromFleet(s.agent.ctx)
		if c != nil {
			return fleetTurn{token: s.adopted(c)}, true
		}
		return fleetTurn{hold: hold}, hold != nil
	}
	if t, done := read(); done {
		return t
	}
	if !s.fleetUsable() { // the read found etcd down
		return turn
	}
	unlock, err := s.lockFleet()
	switch {
	case err == nil:
		if c := arrived(); c != nil {
			unlock()
			return fleetTurn{token: c}
		}
		if t, done := read(); done {
			unlock()
			return t
		}
		return fleetTurn{unlock: unlock}
	case errors.Is(err, errArrived) && arrived() != nil:
		return fleetTurn{token: arrived()}
	case errors.Is(err, errLockWait):
		if t, done := read(); done { // the holder finished after all
			return t
		}
		s.fleetAlone(err)
	default:
		s.fleetTrouble(err)
	}
	return turn
}

// lockFleet takes the fingerprint's lock for a fetch. It waits at most
// fetch_timeout (a live holder's fetch takes no longer; a dead holder's
// lock is gone within fleet.LockTTL), and stops waiting when the watch
// installs a token meanwhile (errArrived). A wait that times out is no
// fault of the fleet's (errLockWait): the holder is slow.
func (s *source) lockFleet() (unlock func(), err error) {
	s.mu.Lock()
	if s.arrivedSig == nil {
		s.arrivedSig = make(chan struct{})
	}
	sig := s.arrivedSig
	s.fleetStats.LockWaits++
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.agent.ctx, s.prof.timing.FetchTimeout.Duration)
	defer cancel()
	go func() {
		// The watch normally brings the holder's token; reading the record
		// now and then covers a watch not yet registered (a cold start)
		// or cut off, so that waiters do not take the lock one by one.
		tick := time.NewTicker(lockPoll)
		defer tick.Stop()
		for {
			select {
			case <-sig:
				cancel()
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if r, ok, err := s.agent.fleet.Get(ctx, s.prof.fingerprint); err == nil && ok {
					if c := s.adoptRecord(r); c != nil { // closes sig
						s.adopted(c)
					}
				}
			}
		}
	}()
	unlock, err = s.agent.fleet.Lock(ctx, s.prof.fingerprint)
	if err == nil {
		return unlock, nil
	}
	select {
	case <-sig:
		return nil, errArrived
	default:
	}
	if ctx.Err() != nil && s.agent.ctx.Err() == nil {
		return nil, errLockWait
	}
	return nil, err
}

// lockPoll is how often a host waiting for a fingerprint's lock reads its
// record, besides watching it.
const lockPoll = time.Second

var (
	errArrived  = errors.New("fleet: a token arrived while waiting for the lock")
	errLockWait = errors.New("fleet: the lock's holder did not finish within fetch_timeout")
)

// fromFleet installs the fleet's token for the profile when it is newer
// than the one held and has at least min_valid left. Failing that, a
// permanent refusal another host recorded for this credential holds this
// host off the IdP too: the error is a holdError. Both nil: there is
// nothing to use (or the fleet could not be read: then this host fetches
// for itself).
func (s *source) fromFleet(ctx context.Context) (*cached, error) {
	s.mu.Lock()
	s.fleetStats.Reads++
	s.mu.Unlock()
	r, ok, err := s.agent.fleet.Get(ctx, s.prof.fingerprint)
	if errors.Is(err, fleet.ErrTampered) {
		// Not served; this host, under the lock, writes a good record over it.
		s.log.Error().Err(err).Msg("the fleet's record for this profile does not authenticate (altered in etcd, or copied from another fingerprint's key); ignored")
		return nil, nil
	}
	if err != nil {
		s.fleetTrouble(err)
		return nil, nil
	}
	s.mu.Lock()
	if s.fleetDown {
		s.fleetDown = false
		s.log.Info().Msg("fleet available again; sharing tokens with the other hosts")
	}
	s.mu.Unlock()
	if !ok {
		return nil, nil
	}
	if c := s.adoptRecord(r); c != nil {
		return c, nil
	}
	return nil, s.adoptFailure(r)
}

// adoptFailure holds this host off the IdP until the record's failure
// ends, when it is a refusal of this host's credential made since the
// last reload; nil otherwise.
func (s *source) adoptFailure(r fleet.Record) error {
	f := r.Failure
	now := s.agent.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || f == nil || f.Credential != s.prof.credential || !f.Until.After(now) || f.At.Before(s.fleetForgot) {
		return nil
	}
	err := fmt.Errorf("%w (refused to host %s; shared through the fleet)", &idp.Error{
		Endpoint: f.Endpoint, StatusCode: f.Status, Code: f.Code, Description: f.Description,
	}, ipc.SafeText(r.MintedBy))
	first := s.lastErr == nil || !s.permanent
	s.lastErr, s.lastFailure, s.permanent, s.retryUntil = err, now, true, time.Time{}
	s.nextAttempt = f.Until
	s.armLocked(now, f.Until)
	if first {
		s.log.Warn().Str("refused_host", ipc.SafeText(r.MintedBy)).Str("idp_error", f.Code).Int("status", f.Status).Time("until", f.Until).
			Msg("the IdP refused this client to another host of the fleet; not asking it until then (fix the credential, then reload)")
	}
	return &holdError{wait: f.Until.Sub(now), err: err, fresh: true}
}

// failToFleet shares a permanent refusal this host got, so that the other
// hosts with the same credential hold off the IdP until it ends instead
// of each learning it for itself. The record keeps the token held, if any.
func (s *source) failToFleet(err error, at, until time.Time) {
	var ie *idp.Error
	if !errors.As(err, &ie) || ie.Transient {
		return
	}
	r := fleet.Record{MintedBy: s.agent.hostname, Failure: &fleet.Failure{
		Endpoint: ie.Endpoint, Status: ie.StatusCode, Code: ie.Code, Description: ie.Description,
		At: at, Until: until, Credential: s.prof.credential,
	}}
	if c := s.cur.Load(); c != nil {
		r.AccessToken, r.TokenType, r.Scope, r.ExpiresAt, r.ObtainedAt = c.AccessToken, c.TokenType, c.Scope, c.ExpiresAt, c.ObtainedAt
	}
	if err := s.agent.fleet.Put(s.agent.ctx, s.prof.fingerprint, r); err != nil {
		s.fleetTrouble(err)
	}
}

// adoptRecord installs a fleet record when it has at least min_valid left
// and outlives the token held; nil otherwise.
func (s *source) adoptRecord(r fleet.Record) *cached {
	now, mono := readClock(s.agent.clock)
	if r.AccessToken == "" || r.ExpiresAt.Sub(now) < s.prof.timing.MinValid.Duration {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if cur := s.cur.Load(); cur != nil && (r.AccessToken == cur.AccessToken ||
		!r.ExpiresAt.After(cur.ExpiresAt) && !(r.ExpiresAt.Equal(cur.ExpiresAt) && r.ObtainedAt.After(cur.ObtainedAt))) {
		// Nothing newer than what this host holds (and may be refreshing).
		// Expiry decides; tokens that expire in the same second (a JWT's
		// exp counts whole seconds) by when they were fetched.
		return nil
	}
	ttl := r.ExpiresAt.Sub(r.ObtainedAt)
	c := &cached{
		Token:     Token{AccessToken: r.AccessToken, TokenType: r.TokenType, Scope: r.Scope, ExpiresAt: r.ExpiresAt.Round(0), ObtainedAt: r.ObtainedAt.Round(0)},
		refreshAt: refreshTime(r.ObtainedAt.Round(0), ttl, s.prof.timing, s.agent.rand()),
		sum:       sha256.Sum256([]byte(r.AccessToken)),
		fromFleet: true,
	}
	c.monoExpiry, c.monoRefresh = mono+c.ExpiresAt.Sub(now), mono+c.refreshAt.Sub(now)
	s.cur.Store(c)
	if s.arrivedSig != nil {
		close(s.arrivedSig) // a fetch waiting for the lock has its token
		s.arrivedSig = nil
	}
	s.fleetStats.Hits++
	s.mintedBy = ipc.SafeText(r.MintedBy) // another host's text: shown and logged as text
	s.failures, s.lastErr, s.nextAttempt = 0, nil, time.Time{}
	s.armLocked(now, c.refreshAt)
	s.log.Info().Str("minted_by", s.mintedBy).Time("expires_at", c.ExpiresAt).Msg("token from the fleet; no IdP request")
	return c
}

// watchFleet serves the tokens other hosts fetch as soon as they are
// written, until the source closes.
func (s *source) watchFleet() {
	if s.agent.fleet == nil || !s.prof.fleetShared {
		return
	}
	ctx, cancel := context.WithCancel(s.agent.ctx)
	s.mu.Lock()
	s.stopWatch = cancel
	s.mu.Unlock()
	go func() {
		for r := range s.agent.fleet.Watch(ctx, s.prof.fingerprint) {
			if c := s.adoptRecord(r); c != nil {
				s.adopted(c)
			}
		}
	}()
}

// adopted keeps a token from the fleet as a fetched one is kept: in the
// store and the file sinks.
func (s *source) adopted(c *cached) *cached {
	s.agent.persist(s.record(c))
	s.writeSinksAfter(c)
	return c
}

// toFleet writes a token this host fetched for the fleet.
func (s *source) toFleet(c *cached) {
	err := s.agent.fleet.Put(s.agent.ctx, s.prof.fingerprint, fleet.Record{
		AccessToken: c.AccessToken, TokenType: c.TokenType, Scope: c.Scope,
		ExpiresAt: c.ExpiresAt, ObtainedAt: c.ObtainedAt, MintedBy: s.agent.hostname,
	})
	if err != nil {
		s.fleetTrouble(err)
		return
	}
	s.mu.Lock()
	s.fleetStats.Mints++
	s.mu.Unlock()
}

// fleetRetryAfter is how long a profile fetches for this host alone after
// the fleet failed it, before asking the fleet again: an unreachable etcd
// costs a fetch at most one operation timeout now and then, not on every
// fetch (static stability). Meanwhile a probe reads the fleet at this
// pace, so that the profile rejoins (and takes the fleet's token) within
// it of etcd's return, not at its next fetch.
const fleetRetryAfter = 10 * time.Second

// fleetUsable reports whether the fleet is to be asked now.
func (s *source) fleetUsable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.fleetDown || !s.agent.clock.Now().Before(s.fleetRetry)
}

// fleetTrouble logs an etcd failure once per profile until the fleet
// works again; the profile goes on fetching for this host alone, and asks
// the fleet again after fleetRetryAfter.
func (s *source) fleetTrouble(err error) {
	s.mu.Lock()
	first := !s.fleetDown
	s.fleetDown, s.fleetRetry = true, s.agent.clock.Now().Add(fleetRetryAfter)
	s.fleetWrongKey = errors.Is(err, fleet.ErrWrongKey)
	if first && !s.closed {
		s.stopProbe = s.agent.clock.AfterFunc(fleetRetryAfter, s.probeFleet)
	}
	s.mu.Unlock()
	switch {
	case !first:
	case errors.Is(err, fleet.ErrWrongKey):
		s.log.Error().Err(err).Msg("this host's [fleet] seal_key is not the fleet's: it fetches tokens for itself and shares none; give it the fleet's seal_key and reload")
	default:
		s.log.Warn().Err(err).Msg("fleet unavailable; fetching tokens for this host alone until it answers")
	}
}

// fleetAlone notes a fetch made for this host alone because the lock's
// holder took longer than fetch_timeout (alive, as its lease says, but
// slow: a hung IdP connection, say). The fleet stays in use.
func (s *source) fleetAlone(err error) {
	s.log.Warn().Err(err).Msg("the fleet's lock holder is slow; fetching for this host")
}

// probeFleet reads the fleet while the profile is down to this host
// alone; once it answers, the profile rejoins and takes the fleet's token
// if that is newer. It probes again after fleetRetryAfter until then.
func (s *source) probeFleet() {
	s.mu.Lock()
	s.stopProbe = nil
	down, closed := s.fleetDown, s.closed
	s.mu.Unlock()
	if !down || closed {
		return
	}
	c, _ := s.fromFleet(s.agent.ctx) // a failure re-arms the probe (fleetTrouble)
	s.mu.Lock()
	if s.fleetDown && s.stopProbe == nil && !s.closed {
		// Still down without a new failure logged (a wrong key read as
		// such again): probe on.
		s.stopProbe = s.agent.clock.AfterFunc(fleetRetryAfter, s.probeFleet)
	}
	s.mu.Unlock()
	if c != nil {
		s.adopted(c)
	}
}

// OpenFleet connects to the etcd cluster of cfg's [fleet] (nil, nil, nil
// without one): it reads the seal key and the TLS material from their
// references. The caller closes the returned io.Closer after the agent.
func OpenFleet(cfg *config.Config) (Fleet, io.Closer, error) {
	f := cfg.Fleet
	if f == nil {
		return nil, nil, nil
	}
	keyText, err := secretref.Read(f.SealKey, cfg.Dir(), secretref.Secret)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: [fleet] seal_key %s: %w", cfg.Path(), config.RefName(f.SealKey), err)
	}
	key, err := fleet.ParseKey(string(keyText))
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: [fleet] seal_key %s: %w", cfg.Path(), config.RefName(f.SealKey), err)
	}
	var tlsCfg *tls.Config
	if f.TLSCA != "" || f.TLSCert != "" || f.TLSKey != "" {
		if tlsCfg, err = fleetTLS(cfg); err != nil {
			return nil, nil, err
		}
	}
	timeout := cmp.Or(f.Timeout.Duration, 2*time.Second)
	cli, err := fleet.Dial(f.Endpoints, tlsCfg, timeout)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: [fleet] endpoints: %w", cfg.Path(), err)
	}
	return fleet.NewEtcd(cli, cmp.Or(f.Prefix, "/tokenagent/"), key, timeout), cli, nil
}

// fleetTLS builds the etcd client's TLS from [fleet]'s references.
func fleetTLS(c *config.Config) (*tls.Config, error) {
	f := c.Fleet
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.TLSCA != "" {
		pem, err := secretref.Read(f.TLSCA, c.Dir(), secretref.Public)
		if err != nil {
			return nil, fmt.Errorf("config %s: [fleet] tls_ca %s: %w", c.Path(), config.RefName(f.TLSCA), err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("config %s: [fleet] tls_ca %s: no PEM certificate in it", c.Path(), config.RefName(f.TLSCA))
		}
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		return nil, fmt.Errorf("config %s: [fleet] tls_cert and tls_key go together", c.Path())
	}
	if f.TLSCert != "" {
		certPEM, err := secretref.Read(f.TLSCert, c.Dir(), secretref.Public)
		if err != nil {
			return nil, fmt.Errorf("config %s: [fleet] tls_cert %s: %w", c.Path(), config.RefName(f.TLSCert), err)
		}
		keyPEM, err := secretref.Read(f.TLSKey, c.Dir(), secretref.Secret)
		if err != nil {
			return nil, fmt.Errorf("config %s: [fleet] tls_key %s: %w", c.Path(), config.RefName(f.TLSKey), err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("config %s: [fleet] tls_cert/tls_key: %w", c.Path(), err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}
