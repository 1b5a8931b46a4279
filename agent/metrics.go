package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokenagent/tokenagent/agent/idp"
)

// LatencyBuckets are the upper bounds, in seconds, of the IdP latency
// histogram.
var latencyBuckets = [...]float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// LatencyBuckets returns the upper bounds, in seconds, of Histogram's
// buckets.
func LatencyBuckets() []float64 { return latencyBuckets[:] }

// Histogram is a cumulative-ready latency histogram: Counts[i] are the
// observations in bucket i of LatencyBuckets, the last one above them all.
type Histogram struct {
	Counts [len(latencyBuckets) + 1]uint64
	Sum    float64 // seconds
	N      uint64
}

func (h *Histogram) observe(d time.Duration) {
	secs := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets[:], secs)
	h.Counts[i]++
	h.Sum += secs
	h.N++
}

// resultClass names an upstream result for metrics: "ok", the IdP's
// error code, "http_NNN", "timeout" or "network". (The server reduces
// the IdP's code to a safe label.)
func resultClass(err error) string {
	var ie *idp.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, idp.ErrIssuerMismatch):
		return "issuer_mismatch"
	case errors.As(err, &ie) && ie.Code != "":
		return ie.Code
	case errors.As(err, &ie) && ie.StatusCode != 0:
		return fmt.Sprintf("http_%d", ie.StatusCode)
	default:
		return "network"
	}
}
