//go:build unix

package daemon

import (
	"strings"
	"testing"
)

// TestHomebrewHint: a directory refused in Homebrew's prefix (user-owned on
// Intel Macs) says where a root agent's files go instead; elsewhere, and
// for an agent of the user's own, nothing is added.
func TestHomebrewHint(t *testing.T) {
	for _, tt := range []struct {
		dir  string
		uid  int
		want string
	}{
		{"/usr/local/etc/tokenagent", 0, "/etc/tokenagent"},
		{"/usr/local/etc", 0, "Homebrew's prefix /usr/local"},
		{"/opt/homebrew/etc/tokenagent", 0, "Homebrew's prefix /opt/homebrew"},
		{"/usr/local/etc/tokenagent", 501, ""},
		{"/usr/localx/etc", 0, ""},
		{"/srv/tokenagent", 0, ""},
	} {
		got := homebrewHint(tt.dir, tt.uid)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("homebrewHint(%q, %d) = %q, want %q in it", tt.dir, tt.uid, got, tt.want)
		}
	}
}
