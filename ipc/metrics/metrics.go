// Package metrics writes the agent's series in the Prometheus text format
// (version 0.0.4): the requests of every door, the engine's per-profile
// counters and the token store's state, read through a Collector the
// engine implements, and the standard Go and process series under
// client_golang's names. The socket's /metrics and the optional TCP
// metrics listener (Handler) both use one Writer.
package metrics

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// Collector is what the engine tells /metrics.
type Collector interface {
	// ProfileStats are every profile's counters.
	ProfileStats() []ProfileStats
	// StoreHealth is the token store's state.
	StoreHealth() ipc.StoreHealth
}

// Writer writes every series. Its zero value writes the runtime's alone.
type Writer struct {
	// Requests are the answered requests of every door.
	Requests *Requests
	// InFlight, if set, is how many socket requests are being answered.
	InFlight func() int64
	// Collector, if set, is the engine.
	Collector Collector

	hideProfiles bool // no series with a profile name (Handler's public view)
}

// ProfileStats are one profile's counters, as the engine keeps them.
type ProfileStats struct {
	Profile string
	// Results counts requests to the IdP by result: "ok", the IdP's error
	// code, "http_NNN", "timeout" or "network".
	Results map[string]uint64
	// LatencyBuckets are the histogram's upper bounds in seconds;
	// LatencyCounts has one count per bucket and one more for +Inf;
	// LatencySum is in seconds.
	LatencyBuckets []float64
	LatencyCounts  []uint64
	LatencySum     float64
	Minted         uint64 // tokens obtained from the IdP
	Coalesced      uint64 // callers that waited on a fetch another caller started
	Served         uint64 // tokens handed to callers
	// ExpiresIn is the held token's remaining validity in seconds, when
	// HasToken.
	ExpiresIn float64
	HasToken  bool
	// LastSuccess is when the last token was fetched (zero: never, by
	// this agent).
	LastSuccess time.Time
	// Fleet is the profile's fleet mode ("" without a fleet; "fleet" when
	// sharing now); FleetStats what it did through the fleet.
	Fleet      string
	FleetStats ipc.FleetStats
	// SinkExpiry is when the token the profile's file sinks hold expires
	// (zero: no sink, or none written yet).
	SinkExpiry time.Time
	// Budgets are the budgets counting the profile's IdP requests.
	Budgets []ipc.BudgetInfo
}

// ListenOptions say who may scrape the TCP listener and what it shows.
type ListenOptions struct {
	// Token, if set, is the bearer token every scrape must send
	// (Authorization: Bearer TOKEN); any other request gets 401. A
	// scrape with the token sees every series.
	Token []byte
	// Profiles shows the per-profile series (profile names and their
	// use) without a Token. Off, the listener writes only series without
	// a profile name: requests by door and outcome, the store, the
	// runtime.
	Profiles bool
}

// Handler serves /metrics alone, for a separate TCP listener
// (metrics_listen), where no peer credentials say who asks: anyone who
// can connect is answered, so profile names are shown only to a scrape
// that sends opts.Token, or when opts.Profiles says so. Like every door,
// it refuses what a browser page could send (door.LoopbackGuard).
func (mw *Writer) Handler(opts ListenOptions) http.Handler {
	public := &Writer{Requests: mw.Requests, InFlight: mw.InFlight, Collector: mw.Collector, hideProfiles: !opts.Profiles}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if why := door.LoopbackGuard(r); why != "" {
			http.Error(w, "forbidden: "+why, http.StatusForbidden)
			return
		}
		if opts.Token != nil {
			sent, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(sent), opts.Token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tokenagent metrics"`)
				http.Error(w, "unauthorized: send the bearer token metrics_token names (Authorization: Bearer ...)", http.StatusUnauthorized)
				return
			}
			mw.Serve(w)
			return
		}
		public.Serve(w)
	})
	return mux
}

// Serve answers a scrape.
func (mw *Writer) Serve(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	mw.Write(w)
}

// Requests counts answered requests by door ("socket",
// "token_endpoint"), profile and outcome ("ok" or an error code), for
// tokenagent_requests_total. The daemon hands one to every door
// (door.Recorder); the Writer writes it. The zero value is ready.
type Requests struct {
	mu     sync.RWMutex
	counts map[[3]string]*atomic.Uint64
}

// Count tallies one answered request. Outcomes may be IdP error codes, so
// they are reduced to [a-z0-9_] first. A series seen before costs a
// shared lock and an atomic add: every request of every door counts here.
func (r *Requests) Count(door, profile, outcome string) {
	if profile == "" {
		profile = "-"
	}
	key := [3]string{door, profile, metricLabel(outcome)}
	r.mu.RLock()
	n := r.counts[key]
	r.mu.RUnlock()
	if n == nil {
		r.mu.Lock()
		if r.counts == nil {
			r.counts = map[[3]string]*atomic.Uint64{}
		}
		if n = r.counts[key]; n == nil {
			n = new(atomic.Uint64)
			r.counts[key] = n
		}
		r.mu.Unlock()
	}
	n.Add(1)
}

// write writes the counts; hideProfiles sums them over profiles, under
// profile "-".
func (r *Requests) write(w io.Writer, hideProfiles bool) {
	r.mu.RLock()
	counts := make(map[[3]string]uint64, len(r.counts))
	for k, n := range r.counts {
		if hideProfiles {
			k[1] = "-"
		}
		counts[k] += n.Load()
	}
	r.mu.RUnlock()
	keys := make([][3]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [3]string) int {
		return strings.Compare(a[0]+"\x00"+a[1]+"\x00"+a[2], b[0]+"\x00"+b[1]+"\x00"+b[2])
	})
	family(w, "tokenagent_requests_total", "counter", "Requests by door (socket, token_endpoint), profile and outcome.")
	for _, k := range keys {
		fmt.Fprintf(w, "tokenagent_requests_total{door=%q,profile=%q,outcome=%q} %d\n", k[0], k[1], k[2], counts[k])
	}
}

// Write writes every series in the Prometheus text format: the
// requests of every door, then the engine's.
func (mw *Writer) Write(w io.Writer) {
	if mw.Requests != nil {
		mw.Requests.write(w, mw.hideProfiles)
	} else {
		(&Requests{}).write(w, false)
	}
	family(w, "tokenagent_requests_in_flight", "gauge", "Socket requests being answered now.")
	var inFlight int64
	if mw.InFlight != nil {
		inFlight = mw.InFlight()
	}
	fmt.Fprintf(w, "tokenagent_requests_in_flight %d\n", inFlight)
	if mw.Collector != nil {
		if !mw.hideProfiles {
			writeStats(w, mw.Collector.ProfileStats())
		}
		writeStore(w, mw.Collector.StoreHealth())
	}
	family(w, "tokenagent_build_info", "gauge", "The agent's version and the Go it was built with (always 1).")
	fmt.Fprintf(w, "tokenagent_build_info{version=%q,goversion=%q} 1\n", ipc.Version(), runtime.Version())
	writeRuntime(w)
}

// writeRuntime writes the standard series of a Go daemon under the names
// client_golang's Go and process collectors use, so that dashboards built
// for them work. (client_golang itself is not linked: its exposition
// package pulls the testing package into the daemon.)
func writeRuntime(w io.Writer) {
	samples := []rtmetrics.Sample{
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
	}
	rtmetrics.Read(samples)
	value := func(i int) uint64 {
		if samples[i].Value.Kind() == rtmetrics.KindUint64 {
			return samples[i].Value.Uint64()
		}
		return 0
	}
	gauge := func(name, help string, v any) {
		family(w, name, "gauge", help)
		fmt.Fprintf(w, "%s %v\n", name, v)
	}
	family(w, "go_info", "gauge", "Information about the Go environment.")
	fmt.Fprintf(w, "go_info{version=%q} 1\n", runtime.Version())
	gauge("go_goroutines", "Number of goroutines that currently exist.", value(0))
	family(w, "go_gc_cycles_total", "counter", "Completed GC cycles.")
	fmt.Fprintf(w, "go_gc_cycles_total %d\n", value(1))
	gauge("go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects.", value(2))
	gauge("go_memstats_sys_bytes", "Bytes of memory obtained from the OS.", value(3))
	for _, m := range processMetrics() {
		family(w, m.name, m.typ, m.help)
		fmt.Fprintf(w, "%s %v\n", m.name, m.value)
	}
}

// storeStates are the values of tokenagent_store_state's label.
var storeStates = []string{"ok", "memory", "failing", "stalled", "unavailable"}

// writeStore writes the token store's series.
func writeStore(w io.Writer, h ipc.StoreHealth) {
	family(w, "tokenagent_store_state", "gauge", "The token store's state (1 for the current one); tokens are served from memory in every state.")
	for _, st := range storeStates {
		v := 0
		if st == h.State {
			v = 1
		}
		fmt.Fprintf(w, "tokenagent_store_state{state=%q} %d\n", st, v)
	}
	family(w, "tokenagent_store_stalls_total", "counter", "Store writes that had not returned after 5 s (a hung or frozen disk).")
	fmt.Fprintf(w, "tokenagent_store_stalls_total %d\n", h.Stalls)
	family(w, "tokenagent_store_write_failures_total", "counter", "Store writes that failed.")
	fmt.Fprintf(w, "tokenagent_store_write_failures_total %d\n", h.WriteFailures)
	family(w, "tokenagent_store_pending_writes", "gauge", "Tokens and deletions not yet written to the store.")
	fmt.Fprintf(w, "tokenagent_store_pending_writes %d\n", h.PendingWrites)
}

func family(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// writeStats writes the engine's series, one family at a time.
func writeStats(w io.Writer, all []ProfileStats) {
	each := func(name, typ, help string, f func(m ProfileStats)) {
		family(w, name, typ, help)
		for _, m := range all {
			f(m)
		}
	}
	each("tokenagent_upstream_requests_total", "counter", "Token requests sent to identity providers, by result.", func(m ProfileStats) {
		byLabel := map[string]uint64{}
		for r, n := range m.Results {
			byLabel[metricLabel(r)] += n
		}
		results := make([]string, 0, len(byLabel))
		for r := range byLabel {
			results = append(results, r)
		}
		slices.Sort(results)
		for _, r := range results {
			fmt.Fprintf(w, "tokenagent_upstream_requests_total{profile=%q,result=%q} %d\n", m.Profile, r, byLabel[r])
		}
	})
	each("tokenagent_upstream_latency_seconds", "histogram", "Latency of token requests to identity providers.", func(m ProfileStats) {
		var cum uint64
		for i, le := range m.LatencyBuckets {
			cum += m.LatencyCounts[i]
			fmt.Fprintf(w, "tokenagent_upstream_latency_seconds_bucket{profile=%q,le=\"%g\"} %d\n", m.Profile, le, cum)
		}
		if n := len(m.LatencyBuckets); n < len(m.LatencyCounts) {
			cum += m.LatencyCounts[n]
		}
		fmt.Fprintf(w, "tokenagent_upstream_latency_seconds_bucket{profile=%q,le=\"+Inf\"} %d\n", m.Profile, cum)
		fmt.Fprintf(w, "tokenagent_upstream_latency_seconds_sum{profile=%q} %g\n", m.Profile, m.LatencySum)
		fmt.Fprintf(w, "tokenagent_upstream_latency_seconds_count{profile=%q} %d\n", m.Profile, cum)
	})
	each("tokenagent_token_expiry_seconds", "gauge", "Seconds until the held token expires (absent when none is held).", func(m ProfileStats) {
		if m.HasToken {
			fmt.Fprintf(w, "tokenagent_token_expiry_seconds{profile=%q} %.0f\n", m.Profile, m.ExpiresIn)
		}
	})
	each("tokenagent_last_success_timestamp_seconds", "gauge", "When the last token was fetched from the IdP, Unix seconds (absent: never, by this agent).", func(m ProfileStats) {
		if !m.LastSuccess.IsZero() {
			fmt.Fprintf(w, "tokenagent_last_success_timestamp_seconds{profile=%q} %d\n", m.Profile, m.LastSuccess.Unix())
		}
	})
	each("tokenagent_sink_expiry_timestamp_seconds", "gauge", "When the token in the profile's file sinks expires, Unix seconds (absent: no sink, or none written yet); past it, the files are stale.", func(m ProfileStats) {
		if !m.SinkExpiry.IsZero() {
			fmt.Fprintf(w, "tokenagent_sink_expiry_timestamp_seconds{profile=%q} %d\n", m.Profile, m.SinkExpiry.Unix())
		}
	})
	each("tokenagent_fleet_sharing", "gauge", "1 while the profile shares tokens through the fleet, 0 while it fetches for this host alone (fleet = false, etcd unavailable, wrong seal_key).", func(m ProfileStats) {
		switch m.Fleet {
		case "":
		case "fleet":
			fmt.Fprintf(w, "tokenagent_fleet_sharing{profile=%q} 1\n", m.Profile)
		default:
			fmt.Fprintf(w, "tokenagent_fleet_sharing{profile=%q} 0\n", m.Profile)
		}
	})
	for _, c := range []struct {
		name, help string
		v          func(ipc.FleetStats) uint64
	}{
		{"tokenagent_fleet_reads_total", "Records read from the fleet before fetching.", func(f ipc.FleetStats) uint64 { return f.Reads }},
		{"tokenagent_fleet_hits_total", "Tokens taken from the fleet (another host's fetch) instead of the IdP.", func(f ipc.FleetStats) uint64 { return f.Hits }},
		{"tokenagent_fleet_lock_waits_total", "Times this host took, or waited for, a profile's fleet lock.", func(f ipc.FleetStats) uint64 { return f.LockWaits }},
		{"tokenagent_fleet_mints_total", "Tokens this host fetched from the IdP and shared with the fleet.", func(f ipc.FleetStats) uint64 { return f.Mints }},
		{"tokenagent_fleet_fallbacks_total", "Fetches made for this host alone while the profile takes part in the fleet (etcd failed, or the lock holder was slow).", func(f ipc.FleetStats) uint64 { return f.Fallbacks }},
	} {
		each(c.name, "counter", c.help, func(m ProfileStats) {
			if m.Fleet != "" {
				fmt.Fprintf(w, "%s{profile=%q} %d\n", c.name, m.Profile, c.v(m.FleetStats))
			}
		})
	}
	writeBudgets(w, all)
	each("tokenagent_coalesced_waiters_total", "counter", "Callers that waited on a fetch another caller had started.", func(m ProfileStats) {
		fmt.Fprintf(w, "tokenagent_coalesced_waiters_total{profile=%q} %d\n", m.Profile, m.Coalesced)
	})
	each("tokenagent_tokens_minted_total", "counter", "Tokens obtained from identity providers.", func(m ProfileStats) {
		fmt.Fprintf(w, "tokenagent_tokens_minted_total{profile=%q} %d\n", m.Profile, m.Minted)
	})
	each("tokenagent_tokens_served_total", "counter", "Tokens handed to callers.", func(m ProfileStats) {
		fmt.Fprintf(w, "tokenagent_tokens_served_total{profile=%q} %d\n", m.Profile, m.Served)
	})
}

// metricLabel reduces a string that came from outside (an IdP's error
// code) to [a-z0-9_], safe and of bounded variety as a label value.
func metricLabel(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
}

// writeBudgets writes tokenagent_idp_budget_used_ratio: a profile's own
// budget under its profile label, a client id's (shared by its profiles)
// once under its client_id label.
func writeBudgets(w io.Writer, all []ProfileStats) {
	family(w, "tokenagent_idp_budget_used_ratio", "gauge", "Share of the IdP request budget used in its current calendar period (UTC), by profile or client id; 1 and above: spent.")
	clients := map[string]bool{}
	for _, m := range all {
		for _, b := range m.Budgets {
			ratio := float64(b.Used) / float64(max(b.Limit, 1))
			switch {
			case b.For != "client_id":
				fmt.Fprintf(w, "tokenagent_idp_budget_used_ratio{profile=%q,period=%q} %g\n", m.Profile, b.Period, ratio)
			case !clients[b.ClientID]:
				clients[b.ClientID] = true
				fmt.Fprintf(w, "tokenagent_idp_budget_used_ratio{client_id=\"%s\",period=%q} %g\n", labelValue(b.ClientID), b.Period, ratio)
			}
		}
	}
}

// labelValue escapes a label value as the text format wants it: \\, \"
// and \n; anything else is written as it is.
func labelValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
