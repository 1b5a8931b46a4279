package door_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/ipc/door"
)

// TestRemovesOnlyItsOwnSocket: on shutdown the listener removes the socket
// file only if it is still the one it created; a socket someone else put
// at the path is left alone.
func TestRemovesOnlyItsOwnSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := door.Listen(path, door.ListenConfig{Mode: 0o600, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path) // someone replaces the socket with their own
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing the agent's listener removed another process's socket: %v", err)
	}

	// Its own socket it does remove.
	own := filepath.Join(t.TempDir(), "own.sock")
	ln, err = door.Listen(own, door.ListenConfig{Mode: 0o600, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := os.Lstat(own); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("own socket left behind after Close: %v", err)
	}
}

// TestSocketModeFromBindNotChmod: the socket's mode is right from the
// moment it exists, whatever the process umask (no window with umask
// bits, no chmod by path that a swapped symlink could redirect).
func TestSocketModeFromBindNotChmod(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for _, mode := range []os.FileMode{0o600, 0o660, 0o666} {
		path := filepath.Join(t.TempDir(), "agent.sock")
		victim := filepath.Join(t.TempDir(), "victim")
		os.WriteFile(victim, []byte("secret"), 0o600)
		ln, err := door.Listen(path, door.ListenConfig{Mode: mode, GID: -1})
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Lstat(path)
		if fi.Mode().Perm() != mode {
			t.Errorf("socket mode %04o, want %04o", fi.Mode().Perm(), mode)
		}
		if vi, _ := os.Stat(victim); vi.Mode().Perm() != 0o600 {
			t.Errorf("another file's mode changed to %04o", vi.Mode().Perm())
		}
		if u := syscall.Umask(0); u != 0 {
			t.Errorf("Listen left the umask at %04o", u)
		}
		ln.Close()
	}
}

// TestBrowserGuards: what a browser page sends is refused at every door;
// what curl, Go and OAuth clients send is not.
func TestBrowserGuards(t *testing.T) {
	for _, tc := range []struct {
		name, host      string
		header          http.Header
		socket, tcpDoor bool // refused by SocketGuard, by LoopbackGuard
	}{
		{"curl on the socket", "tokenagent", nil, false, true},
		{"socket host with a port", "tokenagent:80", nil, false, true},
		{"loopback address", "127.0.0.1:8080", nil, true, false},
		{"IPv6 loopback", "[::1]:8080", nil, true, false},
		{"localhost", "localhost:8080", nil, true, false},
		{"DNS rebinding", "rebind.attacker:8080", nil, true, true},
		{"Origin", "tokenagent", http.Header{"Origin": {"http://x"}}, true, true},
		{"Referer", "127.0.0.1", http.Header{"Referer": {"http://x/"}}, true, true},
	} {
		r := &http.Request{Host: tc.host, Header: tc.header}
		if r.Header == nil {
			r.Header = http.Header{}
		}
		if got := door.SocketGuard(r) != ""; got != tc.socket {
			t.Errorf("%s: SocketGuard refuses = %v, want %v", tc.name, got, tc.socket)
		}
		if got := door.LoopbackGuard(r) != ""; got != tc.tcpDoor {
			t.Errorf("%s: LoopbackGuard refuses = %v, want %v", tc.name, got, tc.tcpDoor)
		}
	}
}

// TestWithTimeout: the lazy request timeout is a context.WithTimeout to
// whoever waits on it, whether it is waited on before or after its
// deadline, or not until after it is stopped.
func TestWithTimeout(t *testing.T) {
	ctx, cancel := door.WithTimeout(context.Background(), time.Hour)
	if d, ok := ctx.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Errorf("Deadline = %v, %v; want an hour from now", d, ok)
	}
	cancel()
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("after cancel, never waited on: Err = %v, want Canceled", ctx.Err())
	}

	ctx, cancel = door.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("after the deadline: Err = %v, want DeadlineExceeded", ctx.Err())
	}

	parent, stop := context.WithCancel(context.Background())
	ctx, cancel = door.WithTimeout(parent, time.Hour)
	defer cancel()
	done := ctx.Done()
	stop()
	<-done
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("parent cancelled: Err = %v, want Canceled", ctx.Err())
	}
}
