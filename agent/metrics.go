package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/ipc"
)

// latencyBuckets are the upper bounds of the upstream latency histogram.
var latencyBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// histogram is a Prometheus-style cumulative histogram; guarded by the
// source's mutex.
type histogram struct {
	counts [10]uint64 // per bucket, the last for +Inf
	sum    float64
	n      uint64
}

func (h *histogram) observe(d time.Duration) {
	secs := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets, secs)
	h.counts[i]++
	h.sum += secs
	h.n++
}

// resultClass names an upstream result for metrics: "ok", the IdP's
// error code, "http_NNN", "timeout" or "network".
func resultClass(err error) string {
	var ie *idp.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &ie) && ie.Code != "":
		return ipc.MetricLabel(ie.Code)
	case errors.As(err, &ie) && ie.StatusCode != 0:
		return fmt.Sprintf("http_%d", ie.StatusCode)
	default:
		return "network"
	}
}

type sourceMetrics struct {
	name      string
	results   map[string]uint64
	latency   histogram
	minted    uint64
	coalesced uint64
	served    uint64
	expiresIn float64
	hasToken  bool
}

func (s *source) metrics(now time.Time) sourceMetrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := sourceMetrics{name: s.prof.name, latency: s.latency, minted: s.minted, coalesced: s.coalesced,
		served: s.served.Load(), results: make(map[string]uint64, len(s.results))}
	for k, v := range s.results {
		m.results[k] = v
	}
	if c := s.cur.Load(); c != nil {
		m.hasToken, m.expiresIn = true, c.ExpiresAt.Sub(now).Seconds()
	}
	return m
}

// writeMetrics writes the engine's series in Prometheus text format.
func (a *Agent) writeMetrics(w io.Writer) {
	now := a.clock.Now()
	sources := *a.sources.Load()
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	slices.Sort(names)
	all := make([]sourceMetrics, 0, len(names))
	for _, name := range names {
		all = append(all, sources[name].metrics(now))
	}
	family := func(name, typ, help string, each func(m sourceMetrics)) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, m := range all {
			each(m)
		}
	}
	family("tokenagent_upstream_requests_total", "counter", "Token requests sent to identity providers, by result.", func(m sourceMetrics) {
		results := make([]string, 0, len(m.results))
		for r := range m.results {
			results = append(results, r)
		}
		slices.Sort(results)
		for _, r := range results {
			fmt.Fprintf(w, "tokenagent_upstream_requests_total{profile=%q,result=%q} %d\n", m.name, r, m.results[r])
		}
	})
	family("tokenagent_upstream_latency_seconds", "histogram", "Latency of token requests to identity providers.", func(m sourceMetrics) {
		var cum uint64
		for i, le := range latencyBuckets {
			cum += m.latency.counts[i]
			fmt.Fprintf(w, "tokenagent_upstream_latency_seconds_bucket{profile=%q,le=\"%g\"} %d\n", m.name, le, cum)
		}
		cum += m.latency.counts[len(latencyBuckets)]
		fmt.Fprintf(w, "tokenagent_upstream_latency_seconds_bucket{profile=%q,le=\"+Inf\"} %d\n", m.name, cum)
		fmt.Fprintf(w, "tokenagent_upstream_latency_seconds_sum{profile=%q} %g\n", m.name, m.latency.sum)
		fmt.Fprintf(w, "tokenagent_upstream_latency_seconds_count{profile=%q} %d\n", m.name, m.latency.n)
	})
	family("tokenagent_token_expiry_seconds", "gauge", "Seconds until the held token expires (absent when none is held).", func(m sourceMetrics) {
		if m.hasToken {
			fmt.Fprintf(w, "tokenagent_token_expiry_seconds{profile=%q} %.0f\n", m.name, m.expiresIn)
		}
	})
	family("tokenagent_coalesced_waiters_total", "counter", "Callers that waited on a fetch another caller had started.", func(m sourceMetrics) {
		fmt.Fprintf(w, "tokenagent_coalesced_waiters_total{profile=%q} %d\n", m.name, m.coalesced)
	})
	family("tokenagent_tokens_minted_total", "counter", "Tokens obtained from identity providers.", func(m sourceMetrics) {
		fmt.Fprintf(w, "tokenagent_tokens_minted_total{profile=%q} %d\n", m.name, m.minted)
	})
	family("tokenagent_tokens_served_total", "counter", "Tokens handed to callers over the socket.", func(m sourceMetrics) {
		fmt.Fprintf(w, "tokenagent_tokens_served_total{profile=%q} %d\n", m.name, m.served)
	})
}
