package metrics

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processMetric is one of the process_* series.
type processMetric struct {
	name, typ, help string
	value           any
}

// processStart is when this process started, for process_start_time_seconds.
var processStart = time.Now()

// processMetrics reads the process series from /proc/self, as
// client_golang's process collector does on Linux.
func processMetrics() []processMetric {
	var out []processMetric
	if data, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 2 {
			page := int64(os.Getpagesize())
			vsz, _ := strconv.ParseInt(f[0], 10, 64)
			rss, _ := strconv.ParseInt(f[1], 10, 64)
			out = append(out,
				processMetric{"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss * page},
				processMetric{"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsz * page})
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		out = append(out, processMetric{"process_open_fds", "gauge", "Number of open file descriptors.", len(fds)})
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		out = append(out, processMetric{"process_max_fds", "gauge", "Maximum number of open file descriptors.", lim.Cur})
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		out = append(out, processMetric{"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu.Seconds()})
	}
	out = append(out, processMetric{"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", float64(processStart.UnixNano()) / 1e9})
	return out
}
