package fleet

import (
	"context"
	"time"
)

// Backend is where the agents of many hosts keep their shared records and
// locks (package etcdfleet is one; a Kubernetes Lease and Secret, or
// Redis, could be another). Every method but Lock's wait is bounded by
// the backend's own operation timeout. Only the fleet's pinned seal key
// id decides ErrWrongKey (Get and Put both fail with it when the pin is
// another key's); a record that does not authenticate, or is sealed
// under any other key id, is junk: an error wrapping ErrTampered, which
// the next Put overwrites.
type Backend interface {
	// Get returns the fingerprint's record (ok false: none).
	Get(ctx context.Context, fingerprint string) (r Record, ok bool, err error)
	// Put writes the fingerprint's record.
	Put(ctx context.Context, fingerprint string, r Record) error
	// Lock takes the fingerprint's lock, waiting until ctx ends; a host
	// that dies holding it loses it within seconds.
	Lock(ctx context.Context, fingerprint string) (unlock func(), err error)
	// Watch returns once the backend has registered a watch of the
	// fingerprint's record, and then sends every record written for it
	// until ctx ends (nothing written after Watch returns is missed, if
	// late), when it closes the channel.
	Watch(ctx context.Context, fingerprint string) (<-chan Record, error)
	// Count adds n to the counter name (n 0: reads it) and returns its
	// total, atomically against every other host's adds. A counter the
	// first add creates vanishes by itself ttl later. Budgets of IdP
	// requests count through it, one counter per budget and period.
	Count(ctx context.Context, name string, n int64, ttl time.Duration) (total int64, err error)
}

// Profile is the engine's side of one profile, as its Coordinator sees it.
type Profile interface {
	// Adopt installs r, a token another host fetched, when it has at least
	// min_valid left and outlives the token held; it reports whether it did.
	Adopt(r Record) bool
	// Held is the token the profile holds now (ok false: none), kept in the
	// record of a refusal this host shares so that other hosts still serve it.
	Held() (r Record, ok bool)
	// Refused holds the profile off the IdP until until for err, another
	// host's permanent refusal of this credential. It returns the error
	// the fetch's callers get (nil: not held, the profile is closed).
	Refused(err error, until time.Time) error
}
