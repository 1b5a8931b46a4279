//go:build !linux

package metrics

import "time"

// processMetric is one of the process_* series.
type processMetric struct {
	name, typ, help string
	value           any
}

var processStart = time.Now()

// processMetrics: only the start time outside Linux (no /proc).
func processMetrics() []processMetric {
	return []processMetric{{"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", float64(processStart.UnixNano()) / 1e9}}
}
