package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/metrics"
)

// engine is a Collector with fixed answers.
type engine struct{}

func (engine) ProfileStats() []metrics.ProfileStats {
	return []metrics.ProfileStats{
		{Profile: "a", Results: map[string]uint64{"ok": 3, "Invalid-Client": 1}, LatencyBuckets: []float64{0.1, 1}, LatencyCounts: []uint64{2, 1, 1},
			LatencySum: 2.5, Minted: 3, Served: 10, HasToken: true, ExpiresIn: 42, LastSuccess: time.Unix(1700000000, 0)},
		{Profile: "b", Fleet: "fleet", FleetStats: ipc.FleetStats{Hits: 7}},
	}
}

func (engine) StoreHealth() ipc.StoreHealth { return ipc.StoreHealth{State: "memory"} }

// TestWriterParses: the Writer's output is valid Prometheus text, with
// the requests of every door, the engine's series (IdP codes reduced to
// label-safe text, fleet series only for fleet profiles) and the store's.
func TestWriterParses(t *testing.T) {
	requests := &metrics.Requests{}
	requests.Count("socket", "a", "ok")
	requests.Count("socket", "a", "ok")
	requests.Count("token_endpoint", "", "invalid_client")
	var b strings.Builder
	(&metrics.Writer{Requests: requests, InFlight: func() int64 { return 1 }, Collector: engine{}}).Write(&b)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("does not parse: %v\n%s", err, b.String())
	}
	for _, want := range []string{
		`tokenagent_requests_total{door="socket",profile="a",outcome="ok"} 2`,
		`tokenagent_requests_total{door="token_endpoint",profile="-",outcome="invalid_client"} 1`,
		`tokenagent_requests_in_flight 1`,
		`tokenagent_upstream_requests_total{profile="a",result="invalid_client"} 1`,
		`tokenagent_upstream_latency_seconds_bucket{profile="a",le="+Inf"} 4`,
		`tokenagent_fleet_hits_total{profile="b"} 7`,
		`tokenagent_store_state{state="memory"} 1`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %s in\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), `tokenagent_fleet_hits_total{profile="a"}`) {
		t.Error("fleet series for a profile without a fleet")
	}
	if families["go_goroutines"] == nil || families["process_start_time_seconds"] == nil {
		t.Error("no runtime or process series")
	}
}
