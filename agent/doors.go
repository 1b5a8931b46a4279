package agent

import "github.com/tokenagent/tokenagent/ipc"

// FleetStats is a profile's fleet counters; the type is the wire's (and
// /metrics'), one type under two names.
type FleetStats = ipc.FleetStats
