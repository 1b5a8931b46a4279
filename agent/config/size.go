package config

import (
	"fmt"
	"strconv"
	"strings"
)

// MemoryLimit is memory_limit: the soft limit of the Go runtime's memory
// (heap and stacks), as GOMEMLIMIT sets it. Near it the garbage collector
// works harder and returns freed memory to the system sooner; it is never
// a reason to refuse a caller.
type MemoryLimit struct {
	// Bytes is the limit; 0 means no limit ("off").
	Bytes int64
	set   bool
}

// DefaultMemoryLimit is memory_limit's default: above what 1,000
// profiles and 2,000 open connections need (docs/benchmarks.md), below
// the 128 MiB a node agent's container is commonly given.
const DefaultMemoryLimit = 64 << 20

// minMemoryLimit is the least limit accepted: below it the collector
// would run all the time for the agent's own few MiB.
const minMemoryLimit = 16 << 20

// Limit is the limit to apply: the configured one, else the default;
// 0 is none.
func (m MemoryLimit) Limit() int64 {
	if !m.set {
		return DefaultMemoryLimit
	}
	return m.Bytes
}

// UnmarshalText reads "64MiB", "1GiB", "100MB", a number of bytes, or
// "off".
func (m *MemoryLimit) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "off" {
		*m = MemoryLimit{set: true}
		return nil
	}
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(num):])
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 || n > (1<<62)/mult {
		return fmt.Errorf("invalid memory_limit %q (write it like \"64MiB\", \"1GiB\", or \"off\")", b)
	}
	if n*mult < minMemoryLimit {
		return fmt.Errorf("memory_limit %q is under %d MiB, where the agent would spend its time collecting garbage; raise it, or say \"off\"", b, minMemoryLimit>>20)
	}
	*m = MemoryLimit{Bytes: n * mult, set: true}
	return nil
}

// MarshalText writes the limit in MiB, or "off".
func (m MemoryLimit) MarshalText() ([]byte, error) {
	if m.set && m.Bytes == 0 {
		return []byte("off"), nil
	}
	if m.Limit()%(1<<20) == 0 {
		return []byte(fmt.Sprintf("%dMiB", m.Limit()>>20)), nil
	}
	return []byte(strconv.FormatInt(m.Limit(), 10)), nil
}
