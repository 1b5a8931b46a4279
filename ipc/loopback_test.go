package ipc

import "testing"

func TestIsLoopbackIP(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want bool
	}{
		{"127.0.0.1", true}, {"127.8.9.10", true}, {"::1", true}, {"::ffff:127.0.0.1", true},
		{"localhost", false}, {"[::1]", false}, {"::1%lo", false}, {"fe80::1%lo", false},
		{"10.0.0.1", false}, {"::ffff:10.0.0.1", false}, {"0.0.0.0", false}, {"::", false}, {"", false},
	} {
		if got := IsLoopbackIP(tt.s); got != tt.want {
			t.Errorf("IsLoopbackIP(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
