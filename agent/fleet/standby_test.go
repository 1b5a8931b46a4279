package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/fleet/etcdfleet"
	"github.com/tokenagent/tokenagent/agent/fleet/fleettest"
)

// TestCoordinatorNoSpaceLogsOnce (issue 23, 5): with etcd's NOSPACE
// alarm raised (a real etcd over its backend quota) reads work and
// writes fail. The fleet is logged unavailable once, and not back at
// each probe that reads it; status says "fleet unavailable: reads only"
// throughout. Once the alarm is disarmed, the next probe writes the
// token this host fetched alone meanwhile, and the fleet is logged back
// once.
func TestCoordinatorNoSpaceLogsOnce(t *testing.T) {
	const quota = 1 << 20 // 1 MiB: etcd sets no minimum
	c := fleettest.NewQuota(t, 1, quota)
	ctx := context.Background()
	key := newKey(t)
	raw := client(t, c.Endpoints)
	var log logBuffer
	h := newHostWith(t, etcdfleet.New(client(t, c.Endpoints), "/nospace/", key, 2*time.Second), "host-a", "fp", "cred", 10*time.Second, zerolog.New(&log))
	var idp idpFetch
	if origin, err := h.Fetch(ctx, idp.fetch(h.prof)); err != nil || origin != fleet.Shared {
		t.Fatalf("first fetch = %v, %v; want Shared", origin, err)
	}

	// Fill etcd past its quota with keys of another prefix.
	filler := strings.Repeat("x", 64<<10)
	var err error
	for i := 0; err == nil; i++ {
		if i > 4*quota/len(filler) {
			t.Fatalf("%d puts of %d bytes and no NOSPACE", i, len(filler))
		}
		_, err = raw.Put(ctx, fmt.Sprintf("/filler/%d", i), filler)
	}
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("filling etcd: %v; want %v", err, rpctypes.ErrNoSpace)
	}
	alarms, err := raw.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != etcdserverpb.AlarmType_NOSPACE {
		t.Fatalf("etcd's alarms = %v, %v; want NOSPACE", alarms, err)
	}

	// Each period: a probe, then a fetch that asks the fleet (its retry
	// time has come) and is refused the lock's lease.
	fetchAlone := func(when string) {
		t.Helper()
		h.prof.mu.Lock()
		h.prof.minValid = 2 * time.Hour // the fleet's token will not do
		h.prof.mu.Unlock()
		if origin, err := h.Fetch(ctx, idp.fetch(h.prof)); err != nil || origin != fleet.Alone {
			t.Errorf("fetch %s = %v, %v; want Alone", when, origin, err)
		}
	}
	fetchAlone("as etcd fills")
	for i := range 4 {
		h.clock.advance(fleet.RetryAfter)
		h.clock.fire()
		if state, _ := h.Status(); state != "fleet unavailable: reads only" {
			t.Errorf("period %d, after the probe: status %q; want fleet unavailable: reads only", i, state)
		}
		fetchAlone(fmt.Sprintf("in period %d", i))
		if state, _ := h.Status(); state != "fleet unavailable: reads only" {
			t.Errorf("period %d, after a fetch: status %q; want fleet unavailable: reads only", i, state)
		}
	}
	if n, m := log.count("fleet unavailable;"), log.count("fleet available again"); n != 1 || m != 0 {
		t.Errorf("with NOSPACE raised over 4 probes and 5 fetches: %d 'unavailable' and %d 'available again' lines; want 1 and 0", n, m)
	}
	if n := idp.calls.Load(); n != 6 {
		t.Errorf("IdP calls = %d, want 6 (the first fetch, and 5 alone)", n)
	}

	// The operator frees space and disarms the alarm.
	if _, err := raw.Delete(ctx, "/filler/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	resp, err := raw.Get(ctx, "/nospace/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Defragment(ctx, c.Endpoints[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the first probe writes; the fleet is back
		h.clock.advance(fleet.RetryAfter)
		h.clock.fire()
		if state, _ := h.Status(); state != "fleet" {
			t.Errorf("probe %d after the alarm was disarmed: status %q; want fleet", i, state)
		}
	}
	if n, m := log.count("fleet unavailable;"), log.count("fleet available again"); n != 1 || m != 1 {
		t.Errorf("after the alarm: %d 'unavailable' and %d 'available again' lines in all; want 1 and 1", n, m)
	}
	// The probe shared the token this host fetched alone.
	r, ok, err := etcdfleet.New(raw, "/nospace/", key, 2*time.Second).Get(ctx, "fp")
	if err != nil || !ok || r.AccessToken != h.prof.token() || r.MintedBy != "host-a" {
		t.Errorf("the fleet's record = %q by %q, %v, %v; want %q by host-a", r.AccessToken, r.MintedBy, ok, err, h.prof.token())
	}
}
