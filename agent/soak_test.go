package agent_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/store"
	"github.com/tokenagent/tokenagent/store/disktest"
)

// front is a TCP forwarder to the IdP that can refuse connections for
// real: it closes its listening socket and later reopens the same port.
type front struct {
	addr     string
	upstream string
	mu       sync.Mutex
	ln       net.Listener
}

func newFront(t *testing.T, upstream string) *front {
	f := &front{upstream: upstream}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(f.refuse)
	return f
}

func (f *front) serve(ln net.Listener) {
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", f.upstream)
				if err != nil {
					return
				}
				defer u.Close()
				// When the agent closes its end (a fetch_timeout, a dropped
				// answer), the upstream side goes too: else the copy from a
				// kept-alive IdP connection waits forever.
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
			}()
		}
	}()
}

func (f *front) refuse() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
}

func (f *front) accept(t *testing.T) {
	f.mu.Lock()
	open := f.ln != nil
	f.mu.Unlock()
	if open {
		return
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		t.Fatalf("reopen %s: %v", f.addr, err)
	}
	f.serve(ln)
}

func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func rssBytes() int64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestFaultSoak keeps the agent under load while the IdP cycles through
// every kind of failure, on the wall clock. It runs only when asked, for
// as long as asked: TOKENAGENT_SOAK=30s (CI; each fault once) or 10m.
func TestFaultSoak(t *testing.T) {
	v := os.Getenv("TOKENAGENT_SOAK")
	if v == "" || testing.Short() {
		t.Skip("the wall-clock fault soak runs when asked: TOKENAGENT_SOAK=30s go test -run TestFaultSoak ./agent (CI does)")
	}
	duration, err := time.ParseDuration(v)
	if err != nil || duration <= 0 {
		t.Fatalf("TOKENAGENT_SOAK=%q: want a duration such as 30s or 10m", v)
	}
	const (
		ttl      = 4 * time.Second // refreshed every 2 s; 1.5 s of slack before min_valid
		minValid = 500 * time.Millisecond
	)
	srv := idptest.New()
	defer srv.Close()
	suiteLog.server(srv)
	srv.AddClient(idptest.Client{ID: "c", Secret: testSecret, Method: "client_secret_basic"})
	srv.SetTTL(ttl)
	f := newFront(t, strings.TrimPrefix(srv.URL, "http://"))
	// The store lives on a loop-mounted ext4 that the soak freezes and
	// fills while the load runs.
	fs, storeConfig := soakStore(t)
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf(`%s
[profiles.p]
token_url = "http://%s/token"
client_id = "c"
client_secret = %q
min_valid = "500ms"
refresh_at = 0.5
fetch_timeout = "500ms"
max_backoff = "2s"
`, storeConfig, f.addr, testSecret)), "soak.toml")
	if err != nil {
		t.Fatal(err)
	}
	logger := newTestLogger(t)
	a, err := agent.Open(cfg, agent.Options{Logger: &logger})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	agent.SetStoreTimings(a, 500*time.Millisecond, 500*time.Millisecond)

	type phase struct {
		name       string
		idp, store bool // what the fault breaks; neither: "ok"
		apply      func()
	}
	clear := func() { srv.ClearFault(); f.accept(t) }
	phases := []phase{
		{"ok", false, false, clear},
		{"500", true, false, func() { srv.SetFault(idptest.Fault{Status: http.StatusInternalServerError}) }},
		{"ok", false, false, clear},
		{"429 Retry-After", true, false, func() { srv.SetFault(idptest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"}) }},
		{"ok", false, false, clear},
		{"slower than fetch_timeout", true, false, func() { srv.SetFault(idptest.Fault{Delay: 900 * time.Millisecond}) }},
		{"ok", false, false, clear},
		{"garbage body", true, false, func() { srv.SetFault(idptest.Fault{Body: []byte("\x00\xffnot json")}) }},
		{"ok", false, false, clear},
		{"dropped connection", true, false, func() { srv.SetFault(idptest.Fault{Drop: true}) }},
		{"ok", false, false, clear},
		{"refused connection", true, false, func() { f.refuse() }},
	}
	var free func()
	if fs != nil {
		phases = append(phases,
			phase{"ok", false, false, clear},
			phase{"store frozen", false, true, fs.Freeze},
			phase{"ok", false, false, fs.Thaw},
			phase{"store full", false, true, func() { free = fs.Fill() }},
			phase{"ok", false, false, func() { free() }},
			phase{"IdP 500 with the store frozen", true, true, func() {
				fs.Freeze()
				srv.SetFault(idptest.Fault{Status: http.StatusInternalServerError})
			}},
			phase{"ok", false, false, func() { fs.Thaw(); clear() }},
		)
	}
	// Recovery: from the end of a fault to the first fresh token from the
	// IdP (IdP faults), or to the store holding every token again (store
	// faults), measured while the load runs.
	var recMu sync.Mutex
	recovery := map[string][]time.Duration{}
	var measuring sync.WaitGroup
	measure := func(fault phase) {
		cleared := time.Now()
		measuring.Go(func() {
			deadline := time.After(20 * time.Second)
			for {
				changed := agent.Changed(a) // before reading: no change is missed
				done := true
				if fault.store {
					h := a.StoreHealth()
					done = h.State == "ok" && h.PendingWrites == 0
				}
				if fault.idp {
					done = done && a.Status()[0].LastRefresh.After(cleared)
				}
				if done {
					recMu.Lock()
					recovery[fault.name] = append(recovery[fault.name], time.Since(cleared))
					recMu.Unlock()
					return
				}
				select {
				case <-changed:
				case <-deadline:
					t.Errorf("no recovery within 20 s after %q", fault.name)
					return
				}
			}
		})
	}

	var (
		served, refused, violations atomic.Int64
		lastGood                    atomic.Int64 // latest ExpiresAt seen, Unix ns
		firstViolation              atomic.Value
	)
	violation := func(format string, args ...any) {
		if violations.Add(1) == 1 {
			firstViolation.Store(fmt.Sprintf(format, args...))
		}
	}
	if _, err := a.Token(context.Background(), self, "p", 0); err != nil {
		t.Fatalf("first token: %v", err)
	}
	runtime.GC()
	startGoroutines, startRSS, startHeap := runtime.NumGoroutine(), rssBytes(), heapInuse()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			tick := time.NewTicker(time.Millisecond) // steady load, ~8,000 requests/s in all
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				// The best token known before the call: one found later by
				// another caller may not have existed when this call was answered.
				knownBefore := time.Unix(0, lastGood.Load())
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				called := time.Now()
				tok, err := a.Token(ctx, self, "p", 0)
				cancel()
				now := time.Now()
				if err != nil {
					refused.Add(1)
					// A caller may be refused only when no token had min_valid left.
					if left := knownBefore.Sub(now); left > minValid+200*time.Millisecond {
						violation("refused (%v) while a token with %v left existed", err, left)
					}
					continue
				}
				served.Add(1)
				// The agent answered at some moment of the call; a token with
				// less than min_valid left even at its start is a violation
				// whatever the scheduler did to this goroutine afterwards.
				if left := tok.ExpiresAt.Sub(called); left < minValid-50*time.Millisecond {
					violation("served a token with %v left when asked (the call took %v), min_valid %v", left, now.Sub(called), minValid)
				}
				for {
					cur := lastGood.Load()
					if tok.ExpiresAt.UnixNano() <= cur || lastGood.CompareAndSwap(cur, tok.ExpiresAt.UnixNano()) {
						break
					}
				}
			}
		})
	}
	start := time.Now()
	var last phase
	froze := false // the soak got as far as freezing the store
	for i := 0; time.Since(start) < duration; i++ {
		p := phases[i%len(phases)]
		t0 := time.Now()
		p.apply()
		froze = froze || p.name == "store frozen"
		if d := time.Since(t0); d > time.Second {
			t.Logf("phase %q took %v to apply", p.name, d)
		}
		if p.name == "ok" && last.name != "" && last.name != "ok" {
			measure(last)
		}
		last = p
		<-time.After(2500 * time.Millisecond) // longer than a refresh interval: every fault meets attempts
	}
	if fs != nil {
		fs.Thaw()
		if free != nil {
			free()
		}
	}
	srv.ClearFault()
	f.accept(t)
	if last.name != "ok" {
		measure(last)
	}
	measuring.Wait()
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	for _, line := range recoveryReport(recovery) {
		t.Log(line)
	}

	st := a.Status()[0]
	runtime.GC()
	endGoroutines, endRSS, endHeap := runtime.NumGoroutine(), rssBytes(), heapInuse()
	t.Logf("%v: %d tokens served, %d refusals, %d upstream attempts; goroutines %d → %d, RSS %.1f → %.1f MiB",
		elapsed.Round(time.Second), served.Load(), refused.Load(), st.UpstreamRequests, startGoroutines, endGoroutines,
		float64(startRSS)/(1<<20), float64(endRSS)/(1<<20))
	if n := violations.Load(); n > 0 {
		t.Errorf("%d violations; first: %v", n, firstViolation.Load())
	}
	// Budget: at most one attempt per second while failing (the backoff
	// floor), one refresh per ~3 s while healthy.
	if budget := int(elapsed.Seconds()) + 5; st.UpstreamRequests > budget {
		t.Errorf("upstream attempts = %d over %v, budget %d", st.UpstreamRequests, elapsed.Round(time.Second), budget)
	}
	if served.Load() == 0 {
		t.Error("no tokens served")
	}
	// A frozen disk stalls writes. (A full one need not fail them: bbolt
	// reuses the pages it freed, so a store that has grown keeps working.)
	if h := a.StoreHealth(); fs != nil {
		t.Logf("store: %d stalls, %d failed writes", h.Stalls, h.WriteFailures)
		if froze && h.Stalls == 0 {
			t.Errorf("the frozen store never stalled a write: %+v", h)
		}
	}
	// The faults really reached the agent: its metrics count failed attempts by class.
	classes := map[string]bool{}
	for class := range a.Status()[0].Results {
		if class != "ok" {
			classes[class] = true
		}
	}
	t.Logf("failure classes seen: %v", classes)
	if len(classes) < 4 && duration >= 30*time.Second {
		t.Errorf("only %d failure classes reached the agent (%v); the soak did not exercise the faults", len(classes), classes)
	}
	if endGoroutines > startGoroutines+5 {
		t.Errorf("goroutines grew from %d to %d", startGoroutines, endGoroutines)
	}
	if endHeap > startHeap+16<<20 {
		t.Errorf("heap in use grew from %.1f to %.1f MiB", float64(startHeap)/(1<<20), float64(endHeap)/(1<<20))
	}
	if !raceEnabled && endRSS > startRSS+32<<20 {
		t.Errorf("RSS grew from %.1f to %.1f MiB", float64(startRSS)/(1<<20), float64(endRSS)/(1<<20))
	}
}

// soakStore puts the soak's store on a loop-mounted file system, with its
// key beside it, and returns the configuration lines that name them; where
// the machine cannot mount one, the soak keeps tokens in memory, runs its
// IdP faults only and says so.
func soakStore(t *testing.T) (*disktest.FS, string) {
	t.Helper()
	fs, err := disktest.TryMount(t, 16)
	if err != nil {
		t.Logf("%v: the soak runs without store faults", err)
		return nil, `store = "memory"`
	}
	key := filepath.Join(t.TempDir(), "store.key")
	if err := store.CreateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	return fs, fmt.Sprintf("store = %q\nstore_key = %q", filepath.Join(fs.Dir, "tokens.db"), "file:"+key)
}

// recoveryReport gives each fault's recovery times as p50 and max, in
// a stable order.
func recoveryReport(rec map[string][]time.Duration) []string {
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(rec)) {
		d := slices.Clone(rec[name])
		slices.Sort(d)
		lines = append(lines, fmt.Sprintf("recovery after %q: n=%d p50=%v max=%v", name, len(d),
			d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond)))
	}
	return lines
}
