package spec_test

import (
	"testing"

	"github.com/tokenagent/tokenagent/agent/idp/spec"
)

func TestIsLoopback(t *testing.T) {
	for _, tt := range []struct {
		host string
		want bool
	}{
		{"localhost", true}, {"idp.localhost", true}, {"127.0.0.1", true}, {"127.8.9.10", true},
		{"::1", true}, {"[::1]", true}, {"::ffff:127.0.0.1", true},
		{"fe80::1%lo", false}, {"::1%lo", false}, {"10.0.0.1", false}, {"example.com", false}, {"", false}, {"localhost.example.com", false},
	} {
		if got := spec.IsLoopback(tt.host); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}
