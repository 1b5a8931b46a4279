package door

import (
	"net"
	"path/filepath"
	"testing"
)

// BenchmarkPin is what pinning adds to a connection of a caller who is
// neither root nor the agent's user while a profile has a process
// selector: SO_PEERPIDFD, the /proc directory, the liveness check and
// the executable's identity at accept, then one Identity (exe and
// cgroup) per request. "credentials" is SO_PEERCRED alone, for scale.
func BenchmarkPin(b *testing.B) {
	path := filepath.Join(b.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	b.Run("credentials", func(b *testing.B) {
		for b.Loop() {
			if _, err := UnixCaller(server); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pin at accept", func(b *testing.B) {
		for b.Loop() {
			p := pinUnixConn(server, 0)
			if _, ok := p.(*pinned); !ok {
				b.Fatal(p.Identity())
			}
			unpin(p)
		}
	})
	p := pinUnixConn(server, 0)
	defer unpin(p)
	b.Run("identity per request", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.Identity(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256 per request (cached)", func(b *testing.B) {
		id, _ := p.Identity()
		for b.Loop() {
			if _, err := id.SHA256(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
