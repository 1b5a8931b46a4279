package config

import "testing"

func TestMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		toml string
		want int64
	}{
		{"", DefaultMemoryLimit},
		{`memory_limit = "64MiB"`, 64 << 20},
		{`memory_limit = "1GiB"`, 1 << 30},
		{`memory_limit = "100MB"`, 100e6},
		{`memory_limit = "33554432"`, 32 << 20},
		{`memory_limit = "off"`, 0},
	} {
		cfg, err := ParseConfig([]byte(tt.toml), "test.toml")
		if err != nil {
			t.Errorf("%q: %v", tt.toml, err)
			continue
		}
		if got := cfg.MemoryLimit.Limit(); got != tt.want {
			t.Errorf("%q: limit %d, want %d", tt.toml, got, tt.want)
		}
	}
}
