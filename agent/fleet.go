package agent

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/fleet/etcdfleet"
	"github.com/tokenagent/tokenagent/agent/schedule"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/ipc"
)

// Fleet is where agents on many hosts share tokens: package fleet's
// Backend (etcdfleet's Etcd is one). The protocol over it is package
// fleet's Coordinator, one per profile that takes part.
type Fleet = fleet.Backend

// newCoordinator makes the fleet coordinator of a profile that takes part
// in the agent's fleet; nil when it does not (or there is no fleet).
func newCoordinator(s *source) *fleet.Coordinator {
	a, p := s.agent, s.prof
	if a.fleet == nil || !p.fleetShared {
		return nil
	}
	return fleet.New(fleet.Config{
		Backend: a.fleet, Fingerprint: p.fingerprint, Credential: p.credential, Host: a.hostname,
		FetchTimeout: p.timing.FetchTimeout.Duration, PermanentBackoff: p.timing.PermanentBackoff.Duration,
		Clock: a.clock, Log: s.log,
	}, (*fleetProfile)(s))
}

// watchFleet starts the profile's fleet coordinator: from now on it
// serves the tokens other hosts fetch as soon as they are written, until
// the source closes.
func (s *source) watchFleet() {
	if s.coord != nil {
		s.coord.Start(s.agent.ctx)
	}
}

// fetchShared is a fetch through the fleet: another host's token when it
// is usable, else the IdP's, shared with the fleet (see fleet.Coordinator).
func (s *source) fetchShared() (*cached, error) {
	var got *cached
	origin, err := s.coord.Fetch(s.agent.ctx, func(ctx context.Context) (fleet.Record, error) {
		c, err := s.fetchIdP(ctx)
		if err != nil {
			return fleet.Record{}, err
		}
		got = c
		return fleetRecord(c), nil
	})
	switch {
	case err != nil:
		return nil, err
	case origin == fleet.Fleet:
		if c := s.cur.Load(); c != nil {
			return c, nil
		}
		return nil, errSourceClosed
	}
	return got, nil
}

// fleetRejected tells the fleet coordinator that the current token, with
// SHA-256 sum, was reported rejected: it is never taken from the fleet
// again, even put back into etcd.
func (s *source) fleetRejected(sum [32]byte) {
	if s.coord != nil {
		s.coord.Rejected(sum)
	}
}

// fleetRecord is c as the fleet shares it.
func fleetRecord(c *cached) fleet.Record {
	return fleet.Record{
		AccessToken: c.AccessToken, TokenType: c.TokenType, Scope: c.Scope,
		ExpiresAt: c.ExpiresAt, ObtainedAt: c.ObtainedAt,
	}
}

// fleetProfile is a source as its fleet coordinator sees it (fleet.Profile).
type fleetProfile source

// Adopt installs a fleet record when it has at least min_valid left and
// outlives the token held, and keeps it as a fetched one is kept: in the
// store and the file sinks.
func (p *fleetProfile) Adopt(r fleet.Record) bool {
	s := (*source)(p)
	now, mono := readClock(s.agent.clock)
	if r.AccessToken == "" || r.ExpiresAt.Sub(now) < s.prof.timing.MinValid.Duration {
		return false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if cur := s.cur.Load(); cur != nil && (r.AccessToken == cur.AccessToken || r.ObtainedAt.Before(cur.ObtainedAt) ||
		!r.ExpiresAt.After(cur.ExpiresAt) && !(r.ExpiresAt.Equal(cur.ExpiresAt) && r.ObtainedAt.After(cur.ObtainedAt))) {
		// Nothing newer than what this host holds (and may be refreshing).
		// Expiry decides; tokens that expire in the same second (a JWT's
		// exp counts whole seconds) by when they were fetched. A token
		// fetched before the one held (kept in the store across a restart,
		// when the coordinator has seen no generation yet) is an older
		// record put back, whatever its expiry.
		s.mu.Unlock()
		return false
	}
	c := s.kept(Token{AccessToken: r.AccessToken, TokenType: r.TokenType, Scope: r.Scope, ExpiresAt: r.ExpiresAt, ObtainedAt: r.ObtainedAt}, now, mono)
	c.fromFleet = true
	c.mintedBy = ipc.SafeText(r.MintedBy) // another host's text: shown and logged as text
	s.cur.Store(c)
	s.failures = schedule.Failures{}
	s.armLocked(now, c.refreshAt)
	s.mu.Unlock()
	s.log.Info().Str("minted_by", c.mintedBy).Time("expires_at", c.ExpiresAt).Msg("token from the fleet; no IdP request")
	s.agent.persist(s.record(c))
	s.writeSinksAfter(c)
	s.agent.notify()
	return true
}

// Held is the token held, for a refusal's record.
func (p *fleetProfile) Held() (fleet.Record, bool) {
	if c := p.cur.Load(); c != nil {
		return fleetRecord(c), true
	}
	return fleet.Record{}, false
}

// Refused holds the source off the IdP until until: another host's
// permanent refusal of this credential.
func (p *fleetProfile) Refused(err error, until time.Time) error {
	s := (*source)(p)
	now := s.agent.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.failures.Refused(err, now, until)
	s.armLocked(now, until)
	return &holdError{wait: until.Sub(now), err: err, fresh: true}
}

// OpenFleet connects to the etcd cluster of cfg's [fleet] (nil, nil, nil
// without one): see DialFleet. The caller closes the returned io.Closer
// after the agent.
func OpenFleet(cfg *config.Config) (Fleet, io.Closer, error) {
	e, cli, err := DialFleet(cfg)
	if e == nil {
		return nil, nil, err
	}
	return e, cli, nil
}

// DialFleet makes the etcd backend of cfg's [fleet] (nil, nil, nil
// without one): it reads the seal key and the TLS material from their
// references. The caller closes the returned io.Closer after the agent.
func DialFleet(cfg *config.Config) (*etcdfleet.Etcd, io.Closer, error) {
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
	cli, err := etcdfleet.Dial(f.Endpoints, tlsCfg, timeout)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: [fleet] endpoints: %w", cfg.Path(), err)
	}
	return etcdfleet.New(cli, cmp.Or(f.Prefix, "/tokenagent/"), key, timeout), cli, nil
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
