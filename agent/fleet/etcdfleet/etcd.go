// Package etcdfleet is the fleet's etcd Backend (see package fleet):
// records sealed with the fleet's seal key under PREFIX/tokens/, locks on
// leases under PREFIX/locks/, the pinned seal key id at
// PREFIX/seal-key-id, and a watch that returns once etcd has registered
// it.
package etcdfleet

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/tokenagent/tokenagent/agent/fleet"
)

// Dial makes an etcd client for endpoints (tlsCfg nil: plain http), each
// connection attempt bounded by timeout. gRPC's reconnect backoff, which
// grows to two minutes by default, is held at 2 s: after an outage an
// agent rejoins within seconds of etcd's return.
func Dial(endpoints []string, tlsCfg *tls.Config, timeout time.Duration) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints: endpoints, TLS: tlsCfg, DialTimeout: timeout,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: timeout,
		})},
		Logger: zap.NewNop(),
	})
}

// Etcd keeps sealed records and per-fingerprint locks in etcd:
// PREFIX/tokens/NAME and PREFIX/locks/NAME, where NAME is the
// fingerprint keyed with the seal key (see RecordKey), and the id of the
// fleet's seal key at PREFIX/seal-key-id (the first host to write pins
// it; a host with another key writes nothing).
type Etcd struct {
	cli     *clientv3.Client
	prefix  string
	key     *fleet.Key   // seals what this host writes
	keys    []*fleet.Key // open what others wrote: key first
	names   []byte       // keys the fingerprints in etcd's key names
	timeout time.Duration
	lockTTL time.Duration
}

// namesLabel derives the key of the key names from the seal key.
const namesLabel = "tokenagent fleet key names"

// LockTTL is how long a fetch lock outlives a host that died holding it:
// a live holder keeps its lease alive however long its fetch takes.
const LockTTL = 5 * time.Second

// New uses cli (the caller closes it) with prefix, sealing with key.
// timeout bounds every operation but Lock's wait.
func New(cli *clientv3.Client, prefix string, key *fleet.Key, timeout time.Duration) *Etcd {
	return &Etcd{cli: cli, prefix: prefix, key: key, keys: []*fleet.Key{key}, names: key.Derive(namesLabel), timeout: timeout, lockTTL: LockTTL}
}

// SetLockTTL changes LockTTL, for tests (etcd grants at least 2 s or so).
func (e *Etcd) SetLockTTL(d time.Duration) { e.lockTTL = d }

// String describes the store for check-config: endpoints, prefix and
// the seal key's id (never the key).
func (e *Etcd) String() string {
	return fmt.Sprintf("etcd %s, prefix %s, seal key id %s", strings.Join(e.cli.Endpoints(), " "), e.prefix, e.key.ID())
}

// Check asks etcd for the fleet's seal key id, within the operation
// timeout: nil when it is this host's key or no host has written yet.
func (e *Etcd) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.pinKey())
	if err != nil {
		return e.opErr("read", err)
	}
	return e.pinned(resp.Kvs)
}

// opErr names the endpoints and what to check in an etcd failure.
func (e *Etcd) opErr(op string, err error) error {
	eps := strings.Join(e.cli.Endpoints(), " ")
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("fleet: etcd %s: no answer from %s within %v (down, unreachable, or refusing this host's TLS: check [fleet] endpoints and tls_*; tokenagentd check-config --online): %w",
			op, eps, e.timeout, err)
	}
	return fmt.Errorf("fleet: etcd %s at %s: %w", op, eps, err)
}

func (e *Etcd) pinKey() string { return e.prefix + "seal-key-id" }

// name is fp as it appears in etcd's key names: HMAC-SHA256 under a key
// derived from the seal key, so that a reader of etcd without the seal
// key cannot confirm a guessed token URL, client id and scopes by hashing
// them (a fingerprint is an unkeyed hash of those). Hosts with one seal
// key compute the same names.
func (e *Etcd) name(fp string) string {
	m := hmac.New(sha256.New, e.names)
	m.Write([]byte(fp))
	return hex.EncodeToString(m.Sum(nil))
}

// RecordKey is the etcd key of fp's sealed record (for tests and
// operators' tools: etcdctl get "$(...)").
func (e *Etcd) RecordKey(fp string) string { return e.prefix + "tokens/" + e.name(fp) }

// LockKey is the etcd key prefix of fp's lock (etcd's concurrency mutex
// keeps one key per waiter under LockKey/).
func (e *Etcd) LockKey(fp string) string { return e.prefix + "locks/" + e.name(fp) }

// Get returns the fingerprint's record; ok is false when there is none.
// The pinned seal key id, read with it, decides whether this host's key
// is the fleet's (fleet.ErrWrongKey if not): a host with another key
// looks for its records under other names (see RecordKey) and would find
// none. A record that does not open is an error (fleet.ErrTampered),
// never served.
func (e *Etcd) Get(ctx context.Context, fp string) (r fleet.Record, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	var resp *clientv3.TxnResponse
	err = throughElections(ctx, func() (err error) {
		resp, err = e.cli.Txn(ctx).Then(clientv3.OpGet(e.RecordKey(fp)), clientv3.OpGet(e.pinKey())).Commit()
		return err
	})
	if err != nil {
		return r, false, e.opErr("read", err)
	}
	if err := e.pinned(resp.Responses[1].GetResponseRange().Kvs); err != nil {
		return r, false, err
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return r, false, nil
	}
	r, err = fleet.Open(e.keys, e.prefix, fp, kvs[0].Value)
	return r, err == nil, err
}

// pinned is nil when the pin read (kvs of PREFIX/seal-key-id) is this
// host's key id or absent, fleet.ErrWrongKey naming both ids if not.
func (e *Etcd) pinned(kvs []*mvccpb.KeyValue) error {
	if len(kvs) == 0 || string(kvs[0].Value) == e.key.ID() {
		return nil
	}
	return fmt.Errorf("fleet: this host's seal_key (key id %s) is not the fleet's (key id %s at %s); it fetches for itself and shares nothing: give it the fleet's seal_key and reload: %w",
		e.key.ID(), safeID(kvs[0].Value), e.pinKey(), fleet.ErrWrongKey)
}

// Put writes the fingerprint's record, sealed, if the fleet's seal key
// is this host's (pinning it when no host has yet); fleet.ErrWrongKey if not.
func (e *Etcd) Put(ctx context.Context, fp string, r fleet.Record) error {
	sealed, err := fleet.Seal(e.key, e.prefix, fp, r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	for range 2 {
		var resp *clientv3.TxnResponse
		err := throughElections(ctx, func() (err error) {
			resp, err = e.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.Value(e.pinKey()), "=", e.key.ID())).
				Then(clientv3.OpPut(e.RecordKey(fp), string(sealed))).
				Else(clientv3.OpGet(e.pinKey())).
				Commit()
			return err
		})
		if err != nil {
			return e.opErr("write", err)
		}
		if resp.Succeeded {
			return nil
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			return e.pinned(kvs)
		}
		// No key pinned yet: this host's is the fleet's from now on.
		if _, err := e.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(e.pinKey()), "=", 0)).
			Then(clientv3.OpPut(e.pinKey(), e.key.ID())).
			Commit(); err != nil {
			return e.opErr("write", err)
		}
	}
	return fmt.Errorf("fleet: etcd put: %s changes under this host", e.pinKey())
}

// electionRetry spaces the attempts of throughElections.
const electionRetry = 50 * time.Millisecond

// throughElections runs op until it succeeds, fails for another reason
// than etcd's leader changing or missing, or ctx ends. etcd's client
// retries plain reads through an election itself, but not transactions:
// without this a leader change in the middle of a read or write would
// take the host off the fleet for fleetRetryAfter. (A write retried after
// a "leader changed" that was applied after all writes the same sealed
// record again: harmless.)
func throughElections(ctx context.Context, op func() error) error {
	for {
		err := op()
		if err == nil || !leaderTrouble(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(electionRetry):
		}
	}
}

// leaderTrouble reports whether err is etcd answering that it has no
// leader, or that its leader changed under the request.
func leaderTrouble(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaderChanged) || errors.Is(err, rpctypes.ErrNoLeader) ||
		errors.Is(err, rpctypes.ErrGRPCLeaderChanged) || errors.Is(err, rpctypes.ErrGRPCNoLeader)
}

// safeID quotes a key id read from etcd for an error: hex only.
func safeID(b []byte) string {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') || len(b) > 16 {
			return "(not a key id)"
		}
	}
	return string(b)
}

// Lock takes the fingerprint's lock, waiting until ctx ends. The lock
// lives on a lease this host keeps alive until unlock: a host that dies
// holding it loses it within LockTTL. A lock key on no lease (planted:
// no host writes one) is removed, not waited for.
func (e *Etcd) Lock(ctx context.Context, fp string) (unlock func(), err error) {
	// The lease is granted within the operation timeout, so that an etcd
	// that does not answer fails fast; the wait for another holder is
	// bounded by ctx alone.
	gctx, cancel := context.WithTimeout(ctx, e.timeout)
	lease, err := e.cli.Grant(gctx, int64(max(e.lockTTL/time.Second, 1)))
	cancel()
	if err != nil {
		return nil, e.opErr("lease", err)
	}
	sess, err := concurrency.NewSession(e.cli, concurrency.WithLease(lease.ID))
	if err != nil {
		e.revoke(lease.ID)
		return nil, e.opErr("session", err)
	}
	if err := e.lock(ctx, e.LockKey(fp)+"/", lease.ID); err != nil {
		e.revoke(lease.ID)
		sess.Orphan()
		return nil, fmt.Errorf("fleet: lock %s: %w", e.LockKey(fp), err)
	}
	return func() {
		e.revoke(lease.ID) // the lock's key goes with its lease
		sess.Orphan()
	}, nil
}

// lock is etcd's concurrency mutex (the same keys: PFX/LEASE in hex on
// the lease; the oldest key holds the lock, each waiter waits for the
// deletion of the key created just before its own), except that a key
// with no lease is removed instead of waited for. Such a key is never a
// host's (every host's key lives on its lease); anyone who can write etcd
// can plant one, and etcd's mutex would wait for it forever, stalling
// every cold fetch for fetch_timeout. A key on a lease needs no check:
// etcd refuses a put on a lease that does not exist and deletes a
// lease's keys when it expires, so the wait lasts as long as the
// holder's lease is kept alive.
func (e *Etcd) lock(ctx context.Context, pfx string, lease clientv3.LeaseID) error {
	me := fmt.Sprintf("%s%x", pfx, lease)
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(me), "=", 0)).
		Then(clientv3.OpPut(me, "", clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("the lock key %s exists already", me)
	}
	myRev := resp.Header.Revision
	before := append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(myRev-1))
	for {
		resp, err := e.cli.Get(ctx, pfx, before...)
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			break // no older waiter: this host holds the lock
		}
		kv := resp.Kvs[0]
		if kv.Lease == 0 {
			// Removed only as it was read: a key rewritten meanwhile is
			// looked at again.
			if _, err := e.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
				Then(clientv3.OpDelete(string(kv.Key))).
				Commit(); err != nil {
				return err
			}
			continue
		}
		if err := waitChange(ctx, e.cli, string(kv.Key), resp.Header.Revision+1); err != nil {
			return err
		}
	}
	// The key is still this host's (not deleted by someone else meanwhile).
	got, err := e.cli.Get(ctx, me)
	if err != nil {
		return err
	}
	if len(got.Kvs) == 0 || got.Kvs[0].Lease != int64(lease) {
		return fmt.Errorf("the lock key %s was deleted or rewritten while this host waited", me)
	}
	return nil
}

// waitChange waits until key is deleted or rewritten at or after rev (a
// key rewritten without its lease must be looked at again).
func waitChange(ctx context.Context, cli *clientv3.Client, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range cli.Watch(wctx, key, clientv3.WithRev(rev)) {
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) > 0 {
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("the watch of the lock ended")
}

// revoke ends a lease within the operation timeout; a failure leaves it
// to expire within LockTTL.
func (e *Etcd) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	e.cli.Revoke(ctx, id)
}

// Watch returns once etcd has registered a watch of the fingerprint's
// record (an error if it has not within the operation timeout), and then
// sends every record written for it until ctx ends; records that do not
// open are skipped. A watch that etcd ends — its member lost the leader
// (a partition), or the revision to resume from was compacted while this
// host was cut off — is started again, and the record as it is then is
// sent, so that nothing written meanwhile is missed.
func (e *Etcd) Watch(ctx context.Context, fp string) (<-chan fleet.Record, error) {
	wch, stop, err := e.watch(ctx, fp, 0)
	if err != nil {
		return nil, err
	}
	out := make(chan fleet.Record, 1)
	send := func(value []byte) bool {
		r, err := fleet.Open(e.keys, e.prefix, fp, value)
		if err != nil {
			return true
		}
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer close(out)
		for {
			for resp := range wch {
				for _, ev := range resp.Events {
					if ev.Type == clientv3.EventTypePut && !send(ev.Kv.Value) {
						stop()
						return
					}
				}
			}
			stop()
			// Started again from the record as it is: the new watch begins
			// just after the revision read, so no write falls between.
			var current []byte
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(watchRetry):
				}
				gctx, cancel := context.WithTimeout(ctx, e.timeout)
				resp, err := e.cli.Get(gctx, e.RecordKey(fp))
				cancel()
				if err != nil {
					continue
				}
				if wch, stop, err = e.watch(ctx, fp, resp.Header.Revision+1); err != nil {
					continue
				}
				if len(resp.Kvs) > 0 {
					current = resp.Kvs[0].Value
				}
				break
			}
			if current != nil && !send(current) {
				stop()
				return
			}
		}
	}()
	return out, nil
}

// watch starts a watch of fp's record (from revision from, if not 0) and
// waits, within the operation timeout, for etcd to say it is registered.
func (e *Etcd) watch(ctx context.Context, fp string, from int64) (clientv3.WatchChan, context.CancelFunc, error) {
	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	opts := []clientv3.OpOption{clientv3.WithCreatedNotify()}
	if from > 0 {
		opts = append(opts, clientv3.WithRev(from))
	}
	// etcd's client may block in Watch itself until it connects: the
	// timeout cancels the watch's context, which ends that wait too.
	expired := time.AfterFunc(e.timeout, stop)
	wch := e.cli.Watch(wctx, e.RecordKey(fp), opts...)
	resp, ok := <-wch
	if !expired.Stop() {
		stop()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, e.opErr("watch", context.DeadlineExceeded)
	}
	var err error
	switch {
	case !ok:
		err = errors.New("the watch closed before etcd registered it")
	case resp.Err() != nil:
		err = resp.Err()
	case !resp.Created:
		err = errors.New("etcd's first answer to a watch was not its creation")
	default:
		return wch, stop, nil
	}
	stop()
	return nil, nil, e.opErr("watch", err)
}

// watchRetry spaces the restarts of a watch etcd ended.
const watchRetry = time.Second
