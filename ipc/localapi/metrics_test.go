package localapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsParseAndCount: /metrics is valid Prometheus text and its
// counters match the requests made.
func TestMetricsParseAndCount(t *testing.T) {
	e := start(t, "", profileP, serverOptions{})
	for range 3 {
		if status, _ := e.get("/v1/tokens/p", nil); status != 200 {
			t.Fatal("token request failed")
		}
	}
	e.get("/v1/tokens/nope", nil)
	e.get("/v1/tokens/p", http.Header{"Origin": {"http://x"}})

	status, body := e.get("/metrics", nil)
	if status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	value := func(family string, labels map[string]string) float64 {
		t.Helper()
		f := families[family]
		if f == nil {
			t.Fatalf("no family %s in\n%s", family, body)
		}
	next:
		for _, m := range f.Metric {
			for k, v := range labels {
				if labelValue(m, k) != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("no %s%v in\n%s", family, labels, body)
		return 0
	}
	checks := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"tokenagent_requests_total", map[string]string{"profile": "p", "outcome": "ok"}, 3},
		{"tokenagent_requests_total", map[string]string{"profile": "-", "outcome": "unknown_profile"}, 1},
		{"tokenagent_requests_total", map[string]string{"profile": "-", "outcome": "forbidden"}, 1},
		{"tokenagent_upstream_requests_total", map[string]string{"profile": "p", "result": "ok"}, 1},
		{"tokenagent_upstream_latency_seconds", map[string]string{"profile": "p"}, 1},
		{"tokenagent_tokens_minted_total", map[string]string{"profile": "p"}, 1},
		{"tokenagent_tokens_served_total", map[string]string{"profile": "p"}, 3},
		{"tokenagent_coalesced_waiters_total", map[string]string{"profile": "p"}, 0},
	}
	for _, c := range checks {
		if got := value(c.family, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
	if v := value("tokenagent_token_expiry_seconds", map[string]string{"profile": "p"}); v < 3500 || v > 3600 {
		t.Errorf("tokenagent_token_expiry_seconds = %v, want about 3600", v)
	}
	if v := value("tokenagent_last_success_timestamp_seconds", map[string]string{"profile": "p"}); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("tokenagent_last_success_timestamp_seconds = %v, want about now", v)
	}
	// The series every Go daemon is expected to have, and the build.
	if v := value("process_resident_memory_bytes", nil); v < 1<<20 {
		t.Errorf("process_resident_memory_bytes = %v", v)
	}
	if v := value("process_open_fds", nil); v < 3 {
		t.Errorf("process_open_fds = %v", v)
	}
	if v := value("go_goroutines", nil); v < 1 {
		t.Errorf("go_goroutines = %v", v)
	}
	if v := value("tokenagent_build_info", nil); v != 1 || labelValue(families["tokenagent_build_info"].Metric[0], "goversion") == "" {
		t.Errorf("tokenagent_build_info = %v, %v", v, families["tokenagent_build_info"].Metric[0])
	}
	if v := value("tokenagent_store_state", map[string]string{"state": "memory"}); v != 1 {
		t.Errorf("tokenagent_store_state{state=memory} = %v, want 1", v)
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
