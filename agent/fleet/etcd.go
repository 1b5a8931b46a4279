package fleet

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Etcd keeps sealed records and per-fingerprint locks in etcd:
// PREFIX/tokens/FINGERPRINT and PREFIX/locks/FINGERPRINT.
type Etcd struct {
	cli     *clientv3.Client
	prefix  string
	key     *Key   // seals what this host writes
	keys    []*Key // open what others wrote: key first
	timeout time.Duration
}

// NewEtcd uses cli (the caller closes it) with prefix, sealing with key.
// timeout bounds every operation but Lock's wait.
func NewEtcd(cli *clientv3.Client, prefix string, key *Key, timeout time.Duration) *Etcd {
	return &Etcd{cli: cli, prefix: prefix, key: key, keys: []*Key{key}, timeout: timeout}
}

func (e *Etcd) tokenKey(fp string) string { return e.prefix + "tokens/" + fp }

// Get returns the fingerprint's record; ok is false when there is none.
// A record sealed with another seal key, or one that does not
// authenticate, is an error (ErrWrongKey, ErrTampered), never served.
func (e *Etcd) Get(ctx context.Context, fp string) (r Record, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.tokenKey(fp))
	if err != nil {
		return r, false, fmt.Errorf("fleet: etcd get: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return r, false, nil
	}
	r, err = Open(e.keys, e.prefix, fp, resp.Kvs[0].Value)
	return r, err == nil, err
}

// Put writes the fingerprint's record, sealed.
func (e *Etcd) Put(ctx context.Context, fp string, r Record) error {
	sealed, err := e.key.Seal(e.prefix, fp, r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if _, err := e.cli.Put(ctx, e.tokenKey(fp), string(sealed)); err != nil {
		return fmt.Errorf("fleet: etcd put: %w", err)
	}
	return nil
}

// Lock takes the fingerprint's lock, held by a lease of ttl: a holder
// that dies loses it within ttl. It waits until ctx ends; unlock releases
// it (and its lease).
func (e *Etcd) Lock(ctx context.Context, fp string, ttl time.Duration) (unlock func(), err error) {
	// The lease is granted within the operation timeout, so that an etcd
	// that does not answer fails fast; the wait for another holder is
	// bounded by ctx alone.
	gctx, cancel := context.WithTimeout(ctx, e.timeout)
	lease, err := e.cli.Grant(gctx, int64(max(ttl/time.Second, 1)))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd lease: %w", err)
	}
	sess, err := concurrency.NewSession(e.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd session: %w", err)
	}
	m := concurrency.NewMutex(sess, e.prefix+"locks/"+fp)
	if err := m.Lock(ctx); err != nil {
		sess.Close()
		return nil, fmt.Errorf("fleet: lock %s: %w", fp, err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
		defer cancel()
		m.Unlock(ctx)
		sess.Close()
	}, nil
}

// Watch sends every record written for the fingerprint from now on,
// until ctx ends; records that do not open are skipped.
func (e *Etcd) Watch(ctx context.Context, fp string) <-chan Record {
	out := make(chan Record, 1)
	go func() {
		defer close(out)
		for resp := range e.cli.Watch(ctx, e.tokenKey(fp)) {
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				r, err := Open(e.keys, e.prefix, fp, ev.Kv.Value)
				if err != nil {
					continue
				}
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
