package etcdfleet

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// CountKey is the etcd key of the counter name (see Count): like a
// record's, keyed with the seal key, so that etcd's readers learn no
// client id or fingerprint from it.
func (e *Etcd) CountKey(name string) string { return e.prefix + "counts/" + e.name(name) }

// maxCountTries bounds Count's compare-and-swap loop under contention
// (each try is a read and a transaction; the operation timeout bounds
// them all).
const maxCountTries = 64

// Count adds n to the counter name and returns its total (n 0: reads
// it, 0 when there is none). The counter is a decimal number at
// CountKey(name); the add is a compare-and-swap on its mod revision,
// tried again when another host's add came first. The add that creates
// it puts it on a lease of ttl, which later adds keep: the counter
// vanishes with its period. A value that is not a count (written by no
// agent) counts as 0 and is written over.
func (e *Etcd) Count(ctx context.Context, name string, n int64, ttl time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	key := e.CountKey(name)
	for range maxCountTries {
		var got *clientv3.GetResponse
		err := throughElections(ctx, func() (err error) {
			got, err = e.cli.Get(ctx, key)
			return err
		})
		if err != nil {
			return 0, e.opErr("read", err)
		}
		if len(got.Kvs) == 0 {
			if n == 0 {
				return 0, nil
			}
			lease, err := e.cli.Grant(ctx, max(int64(ttl/time.Second), 1))
			if err != nil {
				return 0, e.opErr("lease", err)
			}
			resp, err := e.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
				Then(clientv3.OpPut(key, strconv.FormatInt(n, 10), clientv3.WithLease(lease.ID))).
				Commit()
			if err != nil {
				e.revoke(lease.ID)
				return 0, e.opErr("write", err)
			}
			if resp.Succeeded {
				return n, nil
			}
			e.revoke(lease.ID) // another host created it first: add to theirs
			continue
		}
		kv := got.Kvs[0]
		total, err := strconv.ParseInt(string(kv.Value), 10, 64)
		if err != nil || total < 0 {
			total = 0
		}
		if n == 0 {
			return total, nil
		}
		total = min(total, math.MaxInt64-n) + n
		resp, err := e.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, strconv.FormatInt(total, 10), clientv3.WithIgnoreLease())).
			Commit()
		switch {
		case err != nil:
			return 0, e.opErr("write", err)
		case resp.Succeeded:
			return total, nil
		}
	}
	return 0, fmt.Errorf("fleet: etcd count %s: %d other hosts' adds came first; counted on this host for now", key, maxCountTries)
}
