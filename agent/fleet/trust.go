package fleet

// What the coordinator accepts from the fleet and what it shares besides
// tokens: record generations (no replay), tokens reported rejected on this
// host (never taken again), and permanent refusals of a credential.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/ipc"
)

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
		return
	}
	c.back() // a write succeeded: the fleet is back, if it was down
}
