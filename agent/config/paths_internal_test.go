package config

import "testing"

// TestSystemStorePath: root's store is where each system keeps a daemon's
// state; macOS has no /var/lib.
func TestSystemStorePath(t *testing.T) {
	for goos, want := range map[string]string{
		"linux":   "/var/lib/tokenagent/tokens.db",
		"freebsd": "/var/lib/tokenagent/tokens.db",
		"darwin":  "/var/db/tokenagent/tokens.db",
	} {
		if got := systemStorePath(goos); got != want {
			t.Errorf("systemStorePath(%q) = %q, want %q", goos, got, want)
		}
	}
}
