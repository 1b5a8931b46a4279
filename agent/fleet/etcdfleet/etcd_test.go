package etcdfleet_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/fleet/etcdfleet"
	"github.com/tokenagent/tokenagent/agent/fleet/fleettest"
)

// cluster is the package's 3-member etcd cluster, shared by the tests
// that do not fault it; each test keeps to its own prefix.
var cluster *fleettest.Cluster

func TestMain(m *testing.M) { fleettest.Main(m, &cluster) }

// TestSealedRecordsInEtcd: what one host writes another reads; etcd holds
// no token text; a record moved to another fingerprint's key, or sealed
// with another seal key, is refused with a clear error.
func TestSealedRecordsInEtcd(t *testing.T) {
	endpoints, prefix := cluster.Endpoints, fleettest.Prefix(t)
	key := fleettest.Key(t)
	a := etcdfleet.New(fleettest.Client(t, endpoints[:1]), prefix, key, 2*time.Second)
	b := etcdfleet.New(fleettest.Client(t, endpoints[2:]), prefix, key, 2*time.Second)
	ctx := context.Background()
	rec := fleet.Record{AccessToken: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmbGVldCJ9.c2ln", TokenType: "Bearer",
		ExpiresAt: time.Now().Add(time.Hour).Round(0), ObtainedAt: time.Now().Round(0), MintedBy: "host-a"}
	if _, ok, err := b.Get(ctx, "fp1"); ok || err != nil {
		t.Fatalf("Get before any Put = %v, %v; want none", ok, err)
	}
	if err := a.Put(ctx, "fp1", rec); err != nil {
		t.Fatal(err)
	}
	got, ok, err := b.Get(ctx, "fp1")
	if err != nil || !ok || got.AccessToken != rec.AccessToken || !got.ExpiresAt.Equal(rec.ExpiresAt) || got.MintedBy != "host-a" {
		t.Fatalf("Get from another member = %+v, %v, %v", got, ok, err)
	}
	// etcd itself (as etcdctl get --prefix shows it) holds no token text.
	raw := fleettest.Client(t, endpoints[1:2])
	all, err := raw.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range all.Kvs {
		if strings.Contains(string(kv.Value), "eyJ") || strings.Contains(string(kv.Value), "host-a") {
			t.Errorf("etcd holds plaintext under %s", kv.Key)
		}
	}
	// The sealed bytes moved to another fingerprint's key do not open.
	sealed, err := raw.Get(ctx, a.RecordKey("fp1"))
	if err != nil || len(sealed.Kvs) != 1 {
		t.Fatalf("the record's key: %v", err)
	}
	raw.Put(ctx, a.RecordKey("fp2"), string(sealed.Kvs[0].Value))
	if _, ok, err := b.Get(ctx, "fp2"); ok || !errors.Is(err, fleet.ErrTampered) {
		t.Errorf("a record moved to another fingerprint = %v, %v; want ErrTampered", ok, err)
	}
	// Another seal key: refused, naming the key ids.
	other := etcdfleet.New(fleettest.Client(t, endpoints), prefix, fleettest.Key(t), 2*time.Second)
	if _, ok, err := other.Get(ctx, "fp1"); ok || !errors.Is(err, fleet.ErrWrongKey) || !strings.Contains(err.Error(), key.ID()) {
		t.Errorf("Get with another seal key = %v, %v; want ErrWrongKey naming key id %s", ok, err, key.ID())
	}
	// ... and cannot write: the first writer's key is the fleet's.
	if err := other.Put(ctx, "fp1", rec); !errors.Is(err, fleet.ErrWrongKey) || !strings.Contains(err.Error(), key.ID()) {
		t.Errorf("Put with another seal key = %v; want ErrWrongKey naming the fleet's key id %s", err, key.ID())
	}
	if got, ok, err := b.Get(ctx, "fp1"); err != nil || !ok || got.AccessToken != rec.AccessToken {
		t.Errorf("after a host with another key tried to write: %+v, %v, %v; want the record as it was", got, ok, err)
	}
}

// TestLockIsExclusiveAndDiesWithItsHolder: one holder at a time across
// hosts; a holder whose lease ends (a host killed) gives way within the
// lease's TTL.
func TestLockIsExclusiveAndDiesWithItsHolder(t *testing.T) {
	endpoints, prefix := cluster.Endpoints, fleettest.Prefix(t)
	key := fleettest.Key(t)
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		e := etcdfleet.New(fleettest.Client(t, endpoints[i%3:i%3+1]), prefix, key, 2*time.Second)
		wg.Go(func() {
			unlock, err := e.Lock(context.Background(), "fp")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(20 * time.Millisecond)
			inside.Add(-1)
			unlock()
		})
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d holders at once, want 1", most.Load())
	}
	// A holder that vanishes without unlocking (its client closed, as when
	// the host dies): the next one gets the lock once the lease expires.
	dying := fleettest.Client(t, endpoints[:1])
	holder := etcdfleet.New(dying, prefix, key, 2*time.Second)
	holder.SetLockTTL(2 * time.Second)
	if _, err := holder.Lock(context.Background(), "fp"); err != nil {
		t.Fatal(err)
	}
	dying.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	unlock, err := etcdfleet.New(fleettest.Client(t, endpoints[1:2]), prefix, key, 2*time.Second).Lock(ctx, "fp")
	if err != nil {
		t.Fatalf("lock after its holder died: %v", err)
	}
	unlock()
}

// TestWatchDeliversNewRecords: a host learns another's new token by watch.
func TestWatchDeliversNewRecords(t *testing.T) {
	endpoints, prefix := cluster.Endpoints, fleettest.Prefix(t)
	key := fleettest.Key(t)
	a := etcdfleet.New(fleettest.Client(t, endpoints[:1]), prefix, key, 2*time.Second)
	b := etcdfleet.New(fleettest.Client(t, endpoints[1:2]), prefix, key, 2*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.Watch(ctx, "fp") // returns once etcd has registered it
	if err != nil {
		t.Fatal(err)
	}
	a.Put(ctx, "fp", fleet.Record{AccessToken: "t1", ExpiresAt: time.Now().Add(time.Hour)})
	select {
	case r := <-ch:
		if r.AccessToken != "t1" {
			t.Errorf("watched %q, want t1", r.AccessToken)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no record by watch")
	}
}

// TestWatchSurvivesCompactionWhileCutOff: a host cut off from etcd (its
// only member stopped) while records were written and compacted away
// still gets the newest record once the member is back: etcd ends the
// watch that cannot resume, and the watch starts again from the record
// as it is.
func TestWatchSurvivesCompactionWhileCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of its own, and a member stopped with a watch open (about 15 s): not with -short")
	}
	c := fleettest.New(t, 3)
	key := fleettest.Key(t)
	a := etcdfleet.New(fleettest.Client(t, c.Endpoints[1:2]), "/w/", key, 2*time.Second)
	b := etcdfleet.New(fleettest.Client(t, c.Endpoints[:1]), "/w/", key, 2*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.Watch(ctx, "fp") // returns once etcd has registered it
	if err != nil {
		t.Fatal(err)
	}
	receive := func(want string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case r, ok := <-ch:
				if !ok {
					t.Fatalf("the watch ended before %s arrived", want)
				}
				if r.AccessToken == want {
					return
				}
			case <-timeout:
				t.Fatalf("%s never arrived by watch", want)
			}
		}
	}
	a.Put(ctx, "fp", fleet.Record{AccessToken: "t1", ExpiresAt: time.Now().Add(time.Hour)})
	receive("t1")
	c.Stop(0)
	a.Put(ctx, "fp", fleet.Record{AccessToken: "t2", ExpiresAt: time.Now().Add(time.Hour)})
	a.Put(ctx, "fp", fleet.Record{AccessToken: "t3", ExpiresAt: time.Now().Add(time.Hour)})
	raw := fleettest.Client(t, c.Endpoints[1:2])
	resp, err := raw.Get(ctx, a.RecordKey("fp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	receive("t3")
}

// TestKeyNamesAreKeyedBySealKey (issue 22, attack 10): a reader of etcd
// without the seal key cannot confirm a guessed profile: the fingerprint
// (an unkeyed SHA-256 of token URL, client id, scopes…, which anyone can
// compute from a guess) appears in no key name. Hosts with one seal key
// find each other's records and share one lock; another seal key names
// them apart.
func TestKeyNamesAreKeyedBySealKey(t *testing.T) {
	endpoints, prefix := cluster.Endpoints, fleettest.Prefix(t)
	key := fleettest.Key(t)
	// A fingerprint as package agent computes it: the hex SHA-256 of the
	// profile's settings, here a guess an attacker can make.
	guess := sha256.Sum256([]byte("37:https://idp.example/oauth2/token;0:;6:orders;"))
	fp := hex.EncodeToString(guess[:])
	a := etcdfleet.New(fleettest.Client(t, endpoints[:1]), prefix, key, 2*time.Second)
	b := etcdfleet.New(fleettest.Client(t, endpoints[1:2]), prefix, key, 2*time.Second)
	ctx := context.Background()
	unlock, err := a.Lock(ctx, fp)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, fp, fleet.Record{AccessToken: "t1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	all, err := fleettest.Client(t, endpoints[2:]).Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Kvs) < 3 {
		t.Fatalf("etcd holds %d keys under %s; want the pin, the record and the lock", len(all.Kvs), prefix)
	}
	for _, kv := range all.Kvs {
		if strings.Contains(string(kv.Key), fp) || strings.Contains(string(kv.Key), fp[:16]) {
			t.Errorf("etcd key %s names the profile's fingerprint: a guess of its settings can be confirmed", kv.Key)
		}
	}
	unlock()
	if got, ok, err := b.Get(ctx, fp); err != nil || !ok || got.AccessToken != "t1" {
		t.Errorf("another host with the seal key: Get = %q, %v, %v; want t1", got.AccessToken, ok, err)
	}
	if a.RecordKey(fp) != b.RecordKey(fp) || a.LockKey(fp) != b.LockKey(fp) {
		t.Errorf("hosts with one seal key name %s differently", fp)
	}
	other := etcdfleet.New(fleettest.Client(t, endpoints[:1]), prefix, fleettest.Key(t), 2*time.Second)
	if other.RecordKey(fp) == a.RecordKey(fp) {
		t.Errorf("another seal key names the record as the fleet's key does")
	}
}
