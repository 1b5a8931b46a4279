package ipc

import (
	"strings"
	"testing"
)

func TestValidProfileName(t *testing.T) {
	for name, want := range map[string]bool{
		"zeebe": true, "a": true, "A.b_c-9": true, strings.Repeat("x", 64): true,
		"": false, ".x": false, "-x": false, "_x": false, strings.Repeat("x", 65): false,
		"a b": false, "a/b": false, "ä": false, "a\x00": false,
	} {
		if got := ValidProfileName(name); got != want {
			t.Errorf("ValidProfileName(%q) = %v, want %v", name, got, want)
		}
	}
}
