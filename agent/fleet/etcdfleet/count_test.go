package etcdfleet_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokenagent/tokenagent/agent/fleet/etcdfleet"
	"github.com/tokenagent/tokenagent/agent/fleet/fleettest"
)

// TestCountAcrossHosts: adds from hosts on different members, at once,
// all count (compare-and-swap, no lost update); the counter lives on a
// lease of the ttl given, under a keyed name that hides the budget's;
// a value no agent wrote counts as 0 and is written over.
func TestCountAcrossHosts(t *testing.T) {
	endpoints, prefix := cluster.Endpoints, fleettest.Prefix(t)
	key := fleettest.Key(t)
	var hosts []*etcdfleet.Etcd
	for i := range 3 {
		hosts = append(hosts, etcdfleet.New(fleettest.Client(t, endpoints[i:i+1]), prefix, key, 5*time.Second))
	}
	ctx := context.Background()
	const name = "client\x00my-client-id\x002026-11-24T12"
	if n, err := hosts[0].Count(ctx, name, 0, time.Hour); n != 0 || err != nil {
		t.Fatalf("Count(0) of no counter = %d, %v; want 0", n, err)
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		for range 10 {
			wg.Go(func() {
				if _, err := h.Count(ctx, name, 2, time.Hour); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	for i, h := range hosts {
		if n, err := h.Count(ctx, name, 0, time.Hour); n != 60 || err != nil {
			t.Errorf("host %d reads %d, %v; want 60 (30 adds of 2)", i, n, err)
		}
	}
	raw := fleettest.Client(t, endpoints)
	got, err := raw.Get(ctx, hosts[0].CountKey(name))
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("the counter's key %s: %v", hosts[0].CountKey(name), err)
	}
	if kv := got.Kvs[0]; kv.Lease == 0 || string(kv.Value) != "60" || strings.Contains(string(kv.Key), "my-client-id") || !strings.HasPrefix(string(kv.Key), prefix+"counts/") {
		t.Errorf("counter %s = %q on lease %x; want 60 on a lease, under %scounts/ and a name that hides the client id", kv.Key, kv.Value, kv.Lease, prefix)
	} else {
		ttl, err := raw.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil || ttl.GrantedTTL != int64(time.Hour/time.Second) {
			t.Errorf("the counter's lease: granted %d s, %v; want the ttl given, 3600 s", ttl.GrantedTTL, err)
		}
	}
	if _, err := raw.Put(ctx, hosts[0].CountKey(name), "junk"); err != nil {
		t.Fatal(err)
	}
	if n, err := hosts[1].Count(ctx, name, 1, time.Hour); n != 1 || err != nil {
		t.Errorf("an add to junk = %d, %v; want 1", n, err)
	}
	if n, err := hosts[2].Count(ctx, "client\x00my-client-id\x002026-11-24T13", 0, time.Hour); n != 0 || err != nil {
		t.Errorf("the next period's counter = %d, %v; want 0: a counter per period", n, err)
	}
}
