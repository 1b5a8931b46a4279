package fleet_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/fleet/etcdfleet"
	"github.com/tokenagent/tokenagent/agent/fleet/fleettest"
	"github.com/tokenagent/tokenagent/agent/idp"
)

// profile is the engine's side of a coordinator in these tests: it holds
// the newest token offered, and says on adopted what it took.
type profile struct {
	mu       sync.Mutex
	held     *fleet.Record
	refused  error
	until    time.Time
	adopted  chan fleet.Record
	minValid time.Duration
}

func newProfile() *profile {
	return &profile{adopted: make(chan fleet.Record, 16), minValid: time.Minute}
}

func (p *profile) Adopt(r fleet.Record) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.AccessToken == "" || time.Until(r.ExpiresAt) < p.minValid || p.held != nil && !r.ExpiresAt.After(p.held.ExpiresAt) {
		return false
	}
	p.held = &r
	p.adopted <- r
	return true
}

func (p *profile) Held() (fleet.Record, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		return fleet.Record{}, false
	}
	return *p.held, true
}

func (p *profile) Refused(err error, until time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refused, p.until = err, until
	return fmt.Errorf("held until %v: %w", until, err)
}

func (p *profile) token() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		return ""
	}
	return p.held.AccessToken
}

// probeClock is the wall clock, moved on by advance, with the probes'
// timers fired by the test.
type probeClock struct {
	mu   sync.Mutex
	fns  []func()
	skew time.Duration
}

func (c *probeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skew)
}

// advance moves the clock on by d (the probes' timers still wait for fire).
func (c *probeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.skew += d
	c.mu.Unlock()
}

func (c *probeClock) AfterFunc(_ time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
	return func() bool { return false }
}

// fire runs the timers armed so far, as if their time had come.
func (c *probeClock) fire() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// host is one host's coordinator for a profile.
type host struct {
	*fleet.Coordinator
	prof  *profile
	clock *probeClock
}

// newHost starts a coordinator for fingerprint fp on backend b.
func newHost(t *testing.T, b fleet.Backend, name, fp, credential string) *host {
	t.Helper()
	return newHostWith(t, b, name, fp, credential, 10*time.Second, zerolog.Nop())
}

// newHostWith is newHost with a fetch_timeout and a log of its own.
func newHostWith(t *testing.T, b fleet.Backend, name, fp, credential string, fetchTimeout time.Duration, log zerolog.Logger) *host {
	t.Helper()
	h := &host{prof: newProfile(), clock: &probeClock{}}
	h.Coordinator = fleet.New(fleet.Config{
		Backend: b, Fingerprint: fp, Credential: credential, Host: name,
		FetchTimeout: fetchTimeout, PermanentBackoff: time.Hour,
		Clock: h.clock, Log: log,
	}, h.prof)
	ctx, cancel := context.WithCancel(context.Background())
	h.Start(ctx)
	t.Cleanup(func() { h.Close(); cancel() })
	return h
}

// idpFetch is an IdP for fetch functions: it counts its calls and hands
// out a new token for each, valid for an hour.
type idpFetch struct {
	calls atomic.Int64
	prof  *profile // installs the token, as the engine does
}

func (f *idpFetch) fetch(p *profile) func(context.Context) (fleet.Record, error) {
	return func(context.Context) (fleet.Record, error) {
		n := f.calls.Add(1)
		now := time.Now().Round(0)
		r := fleet.Record{AccessToken: fmt.Sprintf("token-%d", n), TokenType: "Bearer", ExpiresAt: now.Add(time.Hour), ObtainedAt: now}
		p.mu.Lock()
		p.held = &r
		p.mu.Unlock()
		return r, nil
	}
}

func etcdBackend(t *testing.T, endpoint string, prefix string, key *fleet.Key) *etcdfleet.Etcd {
	return etcdfleet.New(client(t, []string{endpoint}), prefix, key, 2*time.Second)
}

// TestCoordinatorReadHitAndWatch: a token one host fetched and shared is
// another's on its next fetch without asking the IdP (a read), and is
// installed by watch on a host that did not ask.
func TestCoordinatorReadHitAndWatch(t *testing.T) {
	endpoints, prefix := shared(t)
	key := newKey(t)
	var idp idpFetch
	watcher := newHost(t, etcdBackend(t, endpoints[2], prefix, key), "host-c", "fp", "cred")
	a := newHost(t, etcdBackend(t, endpoints[0], prefix, key), "host-a", "fp", "cred")
	<-watcher.Watched() // registered (Status would say if it failed)
	if origin, err := a.Fetch(context.Background(), idp.fetch(a.prof)); err != nil || origin != fleet.Shared {
		t.Fatalf("first fetch = %v, %v; want Shared", origin, err)
	}
	// A host that starts now finds the token by reading it.
	b := newHost(t, etcdBackend(t, endpoints[1], prefix, key), "host-b", "fp", "cred")
	if origin, err := b.Fetch(context.Background(), idp.fetch(b.prof)); err != nil || origin != fleet.Fleet || b.prof.token() != "token-1" {
		t.Fatalf("second host's fetch = %v, %v, token %q; want Fleet, token-1", origin, err, b.prof.token())
	}
	if n := idp.calls.Load(); n != 1 {
		t.Errorf("IdP calls = %d, want 1", n)
	}
	r := <-watcher.prof.adopted
	if r.AccessToken != "token-1" || r.MintedBy != "host-a" {
		t.Errorf("watched %q minted by %q; want token-1 by host-a", r.AccessToken, r.MintedBy)
	}
	if state, st := b.Status(); state != "fleet" || st.Reads != 1 || st.Hits != 1 || st.Mints != 0 || st.Fallbacks != 0 {
		t.Errorf("second host's status = %q %+v; want fleet, 1 read, 1 hit", state, st)
	}
	if state, st := a.Status(); state != "fleet" || st.Mints != 1 || st.LockWaits != 1 {
		t.Errorf("first host's status = %q %+v; want fleet, 1 mint, 1 lock wait", state, st)
	}
}

// TestCoordinatorHerdFetchesOnce: hosts that all find no token at once
// queue on the lock; one fetches, the others get its token by watch (or
// the read after the lock): one IdP request.
func TestCoordinatorHerdFetchesOnce(t *testing.T) {
	endpoints, prefix := shared(t)
	key := newKey(t)
	var idp idpFetch
	var hosts []*host
	for i := range 6 {
		hosts = append(hosts, newHost(t, etcdBackend(t, endpoints[i%3], prefix, key), fmt.Sprintf("host-%d", i), "fp", "cred"))
	}
	var wg sync.WaitGroup
	origins := make([]fleet.Origin, len(hosts))
	for i, h := range hosts {
		wg.Go(func() {
			origin, err := h.Fetch(context.Background(), idp.fetch(h.prof))
			if err != nil {
				t.Errorf("host %d: %v", i, err)
			}
			origins[i] = origin
		})
	}
	wg.Wait()
	if n := idp.calls.Load(); n != 1 {
		t.Errorf("6 hosts at once: %d IdP calls, want 1", n)
	}
	shared := 0
	for i, h := range hosts {
		if h.prof.token() != "token-1" {
			t.Errorf("host %d holds %q, want token-1", i, h.prof.token())
		}
		if origins[i] == fleet.Shared {
			shared++
		}
	}
	if shared != 1 {
		t.Errorf("origins = %v; want one Shared, the rest Fleet", origins)
	}
}

// TestCoordinatorSharesRefusals: a permanent refusal one host got holds
// the hosts with the same credential off the IdP (Profile.Refused), not
// those with another; Forget (a reload) ends that.
func TestCoordinatorSharesRefusals(t *testing.T) {
	endpoints, prefix := shared(t)
	key := newKey(t)
	refuse := func(context.Context) (fleet.Record, error) {
		return fleet.Record{}, &idp.Error{Endpoint: "https://idp.example/token", StatusCode: 401, Code: "invalid_client"}
	}
	var calls atomic.Int64
	counted := func(ctx context.Context) (fleet.Record, error) { calls.Add(1); return refuse(ctx) }
	a := newHost(t, etcdBackend(t, endpoints[0], prefix, key), "host-a", "fp", "stale")
	b := newHost(t, etcdBackend(t, endpoints[1], prefix, key), "host-b", "fp", "stale")
	c := newHost(t, etcdBackend(t, endpoints[2], prefix, key), "host-c", "fp", "rotated")
	if origin, err := a.Fetch(context.Background(), counted); origin != fleet.Shared || !strings.Contains(fmt.Sprint(err), "invalid_client") {
		t.Fatalf("refused host = %v, %v; want Shared and the IdP's error", origin, err)
	}
	origin, err := b.Fetch(context.Background(), counted)
	var ie *idp.Error
	if origin != fleet.Fleet || !errors.As(err, &ie) || ie.Code != "invalid_client" || !strings.Contains(err.Error(), "refused to host host-a; shared through the fleet") {
		t.Errorf("same credential = %v, %v; want Fleet and host-a's invalid_client", origin, err)
	}
	if b.prof.until.Before(time.Now().Add(50 * time.Minute)) {
		t.Errorf("held until %v; want about permanent_backoff from now", b.prof.until)
	}
	if origin, _ := c.Fetch(context.Background(), counted); origin != fleet.Shared {
		t.Errorf("another credential = %v; want a fetch of its own (Shared)", origin)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("IdP calls = %d, want 2 (host a, and host c with another credential)", n)
	}
	// Host c's refusal is now the record's: b forgets what it was held for,
	// and is held by c's? No: c's credential is another. b asks the IdP.
	b.Forget()
	if origin, _ := b.Fetch(context.Background(), counted); origin != fleet.Shared {
		t.Errorf("after Forget = %v; want its own fetch", origin)
	}
}

// TestCoordinatorWrongSealKey: a host with another seal key fetches alone
// and says so; it neither reads nor writes the fleet's record.
func TestCoordinatorWrongSealKey(t *testing.T) {
	endpoints, prefix := shared(t)
	key := newKey(t)
	var idp idpFetch
	good := newHost(t, etcdBackend(t, endpoints[0], prefix, key), "good", "fp", "cred")
	if _, err := good.Fetch(context.Background(), idp.fetch(good.prof)); err != nil {
		t.Fatal(err)
	}
	bad := newHost(t, etcdBackend(t, endpoints[1], prefix, newKey(t)), "bad", "fp", "cred")
	origin, err := bad.Fetch(context.Background(), idp.fetch(bad.prof))
	if err != nil || origin != fleet.Alone || bad.prof.token() != "token-2" {
		t.Errorf("wrong-key host = %v, %v, %q; want Alone with its own token-2", origin, err, bad.prof.token())
	}
	if state, st := bad.Status(); state != "local: wrong seal_key" || st.Fallbacks != 1 {
		t.Errorf("wrong-key host's status = %q %+v; want local: wrong seal_key, 1 fallback", state, st)
	}
	// Still down at the probe: the wrong key is read as such again.
	bad.clock.fire()
	if state, _ := bad.Status(); state != "local: wrong seal_key" {
		t.Errorf("after a probe = %q; want local: wrong seal_key", state)
	}
	other := newHost(t, etcdBackend(t, endpoints[2], prefix, key), "other", "fp", "cred")
	if origin, err := other.Fetch(context.Background(), idp.fetch(other.prof)); origin != fleet.Fleet || err != nil || other.prof.token() != "token-1" {
		t.Errorf("a good host after the wrong-key one = %v, %v, %q; want Fleet, token-1", origin, err, other.prof.token())
	}
}

// TestCoordinatorSlowHolder: a holder that keeps the lock past
// fetch_timeout (alive, stuck on the IdP) does not hold a waiter up: it
// fetches for itself, and the fleet stays in use.
func TestCoordinatorSlowHolder(t *testing.T) {
	endpoints, prefix := shared(t)
	key := newKey(t)
	b := etcdBackend(t, endpoints[0], prefix, key)
	unlock, err := b.Lock(context.Background(), "fp")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	var idp idpFetch
	h := &host{prof: newProfile(), clock: &probeClock{}}
	h.Coordinator = fleet.New(fleet.Config{
		Backend: etcdBackend(t, endpoints[1], prefix, key), Fingerprint: "fp", Credential: "cred", Host: "waiter",
		FetchTimeout: 200 * time.Millisecond, PermanentBackoff: time.Hour, Clock: h.clock, Log: zerolog.Nop(),
	}, h.prof)
	defer h.Close()
	if origin, err := h.Fetch(context.Background(), idp.fetch(h.prof)); origin != fleet.Alone || err != nil {
		t.Errorf("waiter = %v, %v; want Alone", origin, err)
	}
	if state, st := h.Status(); state != "fleet" || st.Fallbacks != 1 || st.LockWaits != 1 {
		t.Errorf("waiter's status = %q %+v; want fleet, 1 lock wait, 1 fallback", state, st)
	}
}

// TestCoordinatorEtcdDownAndRejoin: with its etcd gone a host fetches
// alone (its callers are served), says "fleet unavailable", does not ask
// etcd on every fetch, and rejoins at the probe after etcd's return,
// taking the fleet's newer token.
func TestCoordinatorEtcdDownAndRejoin(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of its own, a member stopped and restarted: not with -short")
	}
	c := fleettest.New(t, 3)
	key := newKey(t)
	var idp idpFetch
	cli := client(t, c.Endpoints[:1])
	h := newHost(t, etcdfleet.New(cli, "/down/", key, 500*time.Millisecond), "cut-off", "fp", "cred")
	if _, err := h.Fetch(context.Background(), idp.fetch(h.prof)); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	for i := range 2 {
		origin, err := h.Fetch(context.Background(), idp.fetch(h.prof))
		if err != nil || origin != fleet.Alone {
			t.Fatalf("fetch %d with etcd down = %v, %v; want Alone", i, origin, err)
		}
	}
	state, st := h.Status()
	if state != "fleet unavailable" || st.Fallbacks != 2 || st.Reads != 3 {
		t.Errorf("status with etcd down = %q %+v; want fleet unavailable, 2 fallbacks, 3 reads (2 for the first fetch, 1 that failed; the next fetch does not ask etcd)", state, st)
	}
	// Meanwhile another host shares a newer token (generation 2: it saw
	// the first host's generation 1).
	other := etcdfleet.New(client(t, c.Endpoints[1:2]), "/down/", key, 2*time.Second)
	now := time.Now().Round(0)
	// The two members left elect a leader first if the stopped one led
	// (etcd processes take an election timeout or two): the write waits.
	if err := c.WaitLeader(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		err := other.Put(context.Background(), "fp", fleet.Record{AccessToken: "token-101", ExpiresAt: now.Add(2 * time.Hour), ObtainedAt: now, MintedBy: "other", Generation: 2})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	// The host's client is connected again once a read on it (which waits
	// for the connection) answers.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "/down/"); err != nil {
		t.Fatal(err)
	}
	h.clock.fire() // the probe's time has come
	if state, _ := h.Status(); state != "fleet" || h.prof.token() != "token-101" {
		t.Errorf("after etcd's return and a probe: %q holding %q; want fleet, token-101", state, h.prof.token())
	}
}

// logBuffer is a log that tests read back, safe for the coordinator's
// goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), sub)
}

// TestCoordinatorForeignRecordIsJunk (issue 22, attack 4): a record that
// someone with write access to etcd sealed under a foreign key id, or
// altered, does not put the hosts into "local: wrong seal_key": only the
// pinned key id decides that. It is junk: not served, logged once, and
// overwritten by the next fetch under the lock, after which the fleet
// shares again.
func TestCoordinatorForeignRecordIsJunk(t *testing.T) {
	endpoints, prefix := shared(t)
	key := newKey(t)
	var idp idpFetch
	a := newHost(t, etcdBackend(t, endpoints[0], prefix, key), "host-a", "fp", "cred")
	if origin, err := a.Fetch(context.Background(), idp.fetch(a.prof)); err != nil || origin != fleet.Shared {
		t.Fatalf("first fetch = %v, %v; want Shared (pins the key)", origin, err)
	}
	backend := etcdBackend(t, endpoints[1], prefix, key)
	raw := client(t, endpoints[2:])
	now := time.Now().Round(0)
	foreign, err := fleet.Seal(newKey(t), prefix, "fp", fleet.Record{AccessToken: "planted", ExpiresAt: now.Add(time.Hour), ObtainedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	good, err := raw.Get(context.Background(), backend.RecordKey("fp"))
	if err != nil || len(good.Kvs) != 1 {
		t.Fatalf("the fleet's record: %v", err)
	}
	altered := []byte(string(good.Kvs[0].Value))
	altered[len(altered)-1] ^= 1
	for _, tc := range []struct {
		name   string
		sealed []byte
	}{{"foreign key id", foreign}, {"altered", altered}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := raw.Put(context.Background(), backend.RecordKey("fp"), string(tc.sealed)); err != nil {
				t.Fatal(err)
			}
			var log logBuffer
			b := newHostWith(t, backend, "host-b", "fp", "cred", 10*time.Second, zerolog.New(&log))
			before := idp.calls.Load()
			origin, err := b.Fetch(context.Background(), idp.fetch(b.prof))
			if err != nil || origin != fleet.Shared || b.prof.token() == "planted" {
				t.Errorf("fetch over a junk record = %v, %v, %q; want Shared with its own token (overwriting the junk)", origin, err, b.prof.token())
			}
			if state, _ := b.Status(); state != "fleet" {
				t.Errorf("status after a junk record = %q; want fleet (only the pinned key id says wrong seal_key)", state)
			}
			if n := log.count("does not open"); n != 1 {
				t.Errorf("the junk record was logged %d times for one fetch (a read and a re-read); want once", n)
			}
			// The junk is gone: a host that starts now takes host b's token.
			c := newHost(t, etcdBackend(t, endpoints[2], prefix, key), "host-c", "fp", "cred")
			if origin, err := c.Fetch(context.Background(), idp.fetch(c.prof)); origin != fleet.Fleet || err != nil || c.prof.token() != b.prof.token() {
				t.Errorf("a host after the overwrite = %v, %v, %q; want Fleet, %q", origin, err, c.prof.token(), b.prof.token())
			}
			if n := idp.calls.Load() - before; n != 1 {
				t.Errorf("IdP calls = %d, want 1 (the fetch that replaced the junk)", n)
			}
		})
	}
}

// TestCoordinatorPlantedLockKey (issue 22, attack 5): lock keys that
// someone with write access to etcd planted under the fingerprint's lock
// on no lease (etcd's mutex waits for every older key's deletion, and
// these are never deleted) do not stall a cold fetch: with fetch_timeout
// at 10 minutes, the fetch completes holding the lock (Shared) long before
// the test's own deadline, and the fleet stays in use.
func TestCoordinatorPlantedLockKey(t *testing.T) {
	endpoints, prefix := shared(t)
	key := newKey(t)
	backend := etcdBackend(t, endpoints[0], prefix, key)
	raw := client(t, endpoints[1:2])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"planted", "7fffffffffffffff"} {
		if _, err := raw.Put(ctx, backend.LockKey("fp")+"/"+name, ""); err != nil {
			t.Fatal(err)
		}
	}
	var idp idpFetch
	h := newHostWith(t, backend, "host-a", "fp", "cred", 10*time.Minute, zerolog.Nop())
	origin, err := h.Fetch(ctx, idp.fetch(h.prof))
	if err != nil || origin != fleet.Shared || ctx.Err() != nil {
		t.Fatalf("cold fetch with planted lock keys = %v, %v (test deadline: %v); want Shared at once", origin, err, ctx.Err())
	}
	if state, st := h.Status(); state != "fleet" || st.Mints != 1 || st.Fallbacks != 0 {
		t.Errorf("status = %q %+v; want fleet, 1 mint, no fallback", state, st)
	}
	// The lock is free again for the next host: its key went with its lease.
	b := newHostWith(t, etcdBackend(t, endpoints[2], prefix, key), "host-b", "fp", "cred", 10*time.Minute, zerolog.Nop())
	b.prof.mu.Lock()
	b.prof.minValid = 2 * time.Hour // host a's token will not do: b fetches, under the lock
	b.prof.mu.Unlock()
	if origin, err := b.Fetch(ctx, idp.fetch(b.prof)); err != nil || origin != fleet.Shared {
		t.Errorf("the next host's fetch = %v, %v; want Shared", origin, err)
	}
}

// TestCoordinatorRefusesReplayedRecords (issue 22, attack 6): someone
// with write access to etcd puts back an older sealed record (copied
// from etcd earlier), or the record of a token reported rejected here. A
// host that has seen a newer generation, or had the token reported, does
// not take it — even holding no token — but fetches under the lock and
// overwrites it.
func TestCoordinatorRefusesReplayedRecords(t *testing.T) {
	endpoints, prefix := shared(t)
	key := newKey(t)
	var idp idpFetch
	ctx := context.Background()
	backend := etcdBackend(t, endpoints[1], prefix, key)
	raw := client(t, endpoints[2:])
	a := newHost(t, etcdBackend(t, endpoints[0], prefix, key), "host-a", "fp", "cred")
	b := newHost(t, backend, "host-b", "fp", "cred")
	sealed := func() string { // the record's bytes as etcd holds them
		t.Helper()
		resp, err := raw.Get(ctx, backend.RecordKey("fp"))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("the fleet's record: %v", err)
		}
		return string(resp.Kvs[0].Value)
	}
	// b's adoptions in order, up to want (by watch or read).
	adoptedUntil := func(want string) []string {
		t.Helper()
		var got []string
		for timeout := time.After(20 * time.Second); ; {
			select {
			case r := <-b.prof.adopted:
				got = append(got, r.AccessToken)
				if r.AccessToken == want {
					return got
				}
			case <-timeout:
				t.Fatalf("host b never took %s; took %v", want, got)
			}
		}
	}
	forget := func() { // host b's token expired, or its callers went
		b.prof.mu.Lock()
		b.prof.held = nil
		b.prof.mu.Unlock()
	}
	if origin, err := a.Fetch(ctx, idp.fetch(a.prof)); err != nil || origin != fleet.Shared {
		t.Fatalf("first fetch = %v, %v", origin, err)
	}
	adoptedUntil("token-1")
	old := sealed()
	// Host a refreshes (its token will not do): generation 2, by watch to b.
	a.prof.mu.Lock()
	a.prof.minValid = 2 * time.Hour
	a.prof.mu.Unlock()
	if origin, err := a.Fetch(ctx, idp.fetch(a.prof)); err != nil || origin != fleet.Shared {
		t.Fatalf("host a's refresh = %v, %v", origin, err)
	}
	adoptedUntil("token-2")

	forget()
	if _, err := raw.Put(ctx, backend.RecordKey("fp"), old); err != nil { // the replay
		t.Fatal(err)
	}
	origin, err := b.Fetch(ctx, idp.fetch(b.prof))
	if err != nil || origin != fleet.Shared || b.prof.token() != "token-3" {
		t.Errorf("host b over a replayed generation 1 = %v, %v, %q; want Shared with its own token-3", origin, err, b.prof.token())
	}
	// A record written after the replay, delivered in order by watch,
	// shows whether the replay was taken on its way.
	forget()
	now := time.Now().Round(0)
	if err := etcdBackend(t, endpoints[0], prefix, key).Put(ctx, "fp", fleet.Record{AccessToken: "token-100", ExpiresAt: now.Add(time.Hour), ObtainedAt: now, Generation: 100}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range adoptedUntil("token-100") {
		if tok == "token-1" {
			t.Errorf("host b took the replayed token-1 (generation 1 after generation 2)")
		}
	}

	// token-100 is reported rejected on host b; the record is put back.
	b.Rejected(sha256.Sum256([]byte("token-100")))
	rejected := sealed()
	forget()
	if _, err := raw.Put(ctx, backend.RecordKey("fp"), rejected); err != nil {
		t.Fatal(err)
	}
	origin, err = b.Fetch(ctx, idp.fetch(b.prof))
	if err != nil || origin != fleet.Shared || b.prof.token() != "token-4" {
		t.Errorf("host b over its rejected token's record = %v, %v, %q; want Shared with its own token-4", origin, err, b.prof.token())
	}
	forget()
	if err := etcdBackend(t, endpoints[0], prefix, key).Put(ctx, "fp", fleet.Record{AccessToken: "token-200", ExpiresAt: now.Add(time.Hour), ObtainedAt: now, Generation: 200}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range adoptedUntil("token-200") {
		if tok == "token-100" {
			t.Errorf("host b took token-100 again after it was reported rejected")
		}
	}
}
