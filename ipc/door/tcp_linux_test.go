package door

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// TestMain doubles as a TCP client run as another user (see dialAs).
func TestMain(m *testing.M) {
	if path := os.Getenv("DOOR_TEST_PIN_SERVE"); path != "" {
		servePinned(path)
		return
	}
	if addr := os.Getenv("DOOR_TEST_DIAL"); addr != "" {
		n, _ := strconv.Atoi(os.Getenv("DOOR_TEST_FILES"))
		for range n { // files opened before the socket: its fd comes after them
			if _, err := os.Open(os.DevNull); err != nil {
				os.Exit(1)
			}
		}
		network := "tcp"
		if path, ok := strings.CutPrefix(addr, "unix:"); ok {
			network, addr = "unix", path
		}
		c, err := net.Dial(network, addr)
		if err != nil {
			os.Exit(1)
		}
		os.Stdout.WriteString("connected\n")
		stdin := bufio.NewReader(os.Stdin)
		for { // hold until told
			switch cmd, _ := stdin.ReadString('\n'); cmd {
			case "exec\n":
				execKeeping(c)
			case "read\n": // the first line the agent sent
				line, _ := bufio.NewReader(c).ReadString('\n')
				os.Stdout.WriteString(line)
				continue
			}
			break
		}
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// execKeeping replaces the dialer with another program (sh, which says
// "execed" once it runs and waits on stdin), the connection c kept open
// across the exec.
func execKeeping(c net.Conn) {
	f, err := c.(interface{ File() (*os.File, error) }).File() // a dup, without FD_CLOEXEC
	if err != nil {
		os.Exit(1)
	}
	syscall.Dup2(int(f.Fd()), 3)
	err = syscall.Exec("/bin/sh", []string{"sh", "-c", "echo execed; read x"}, os.Environ())
	os.Stdout.WriteString(err.Error())
	os.Exit(1)
}

// dialAs connects to addr from a process running as uid and keeps the
// connection until the test ends, or until hangUp, which closes it and
// waits for the process to exit.
func dialAs(t *testing.T, uid int, addr string) (hangUp func()) {
	t.Helper()
	hangUp, _ = dialAsWith(t, uid, addr, 0)
	return hangUp
}

// dialAsWith is dialAs from a process that opens `files` more files before
// it connects; it also returns the process's pid.
func dialAsWith(t *testing.T, uid int, addr string, files int) (hangUp func(), pid int) {
	t.Helper()
	d := startDialer(t, uid, addr, files)
	return d.hangUp, d.pid
}

// sharedDir is a directory other users may reach (t.TempDir's parent is
// 0700), removed when the test ends.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "door-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	return dir
}

// copySelf copies this test binary to path, for another user to run.
func copySelf(t *testing.T, path string) {
	t.Helper()
	self, _ := os.Executable()
	data, err := os.ReadFile(self)
	if err == nil {
		err = os.WriteFile(path, data, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// dialer is a process of startDialer's: a copy of this test binary (bin)
// connected to an address as another user.
type dialer struct {
	pid    int
	bin    string
	stdin  io.WriteCloser
	stdout *bufio.Reader
	hangUp func()
}

// startDialer starts a dialer as uid, connected to addr ("unix:PATH" for
// a Unix socket) with `files` more files open before it connected.
func startDialer(t *testing.T, uid int, addr string, files int) *dialer {
	t.Helper()
	bin := filepath.Join(sharedDir(t), "dialer.test")
	copySelf(t, bin)
	cmd := exec.Command(bin)
	cmd.Env = []string{"DOOR_TEST_DIAL=" + addr, "DOOR_TEST_FILES=" + strconv.Itoa(files), "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	d := &dialer{pid: cmd.Process.Pid, bin: bin, stdin: stdin, stdout: bufio.NewReader(stdout)}
	d.hangUp = func() { once.Do(func() { stdin.Close(); cmd.Wait() }) }
	t.Cleanup(d.hangUp)
	if line, err := d.stdout.ReadString('\n'); err != nil || line != "connected\n" {
		t.Fatalf("dialer as uid %d: %q %v", uid, line, err)
	}
	return d
}

// TestHolderAmongManyFiles: the process holding a TCP caller's socket is
// found when the socket is one of hundreds of its files (read in
// batches), and its pid and gid are the caller's.
func TestHolderAmongManyFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, pid := dialAsWith(t, 2, ln.Addr().String(), 700)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caller, err := TCPCaller(c)
	if err != nil {
		t.Fatal(err)
	}
	if caller.UID != 2 || caller.GID != 2 || caller.PID != int32(pid) {
		t.Errorf("caller holding its socket among 700 files: uid %d gid %d pid %d; want 2, 2, %d", caller.UID, caller.GID, caller.PID, pid)
	}
}

// TestPeerUID: the kernel's view of who owns the client end of a loopback
// TCP connection, over IPv4 and IPv6, for this process and for another
// user's.
func TestPeerUID(t *testing.T) {
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", network)
		if err != nil {
			t.Logf("%s: %v (skipped)", network, err)
			continue
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		checkPeer(t, network, sc, uint32(os.Geteuid()))
		if os.Geteuid() != 0 {
			continue
		}
		dialAs(t, 2, ln.Addr().String()) // the real user bin
		other, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		checkPeer(t, network, other, 2)
	}
}

// TestClosedConnectionIsNotRoot: a client that connects and hangs up
// before the agent asks who it is leaves a socket no process holds, which
// the kernel reports as uid 0. It must be an unknown caller, not root.
func TestClosedConnectionIsNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", network)
		if err != nil {
			t.Logf("%s: %v (skipped)", network, err)
			continue
		}
		defer ln.Close()
		dialAs(t, 2, ln.Addr().String())() // the real user bin connects and hangs up
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		client, server, _ := connAddrs(c)
		for name, lookup := range map[string]func() (uint32, error){
			"peerSocket": func() (uint32, error) { uid, _, err := peerSocket(c); return uid, err },
			"sockDiag":   func() (uint32, error) { id, err := sockDiag(client, server); return id.uid, err },
			"procSocket": func() (uint32, error) { id, err := procSocket(client, server); return id.uid, err },
		} {
			if uid, err := lookup(); err == nil {
				t.Errorf("%s: %s of a connection its client closed = uid %d; want errPeerUnknown", network, name, uid)
			}
		}
	}
}

// checkPeer wants uid from peerUID and from each of the two ways it may
// take: sock_diag and the /proc tables.
func checkPeer(t *testing.T, network string, c net.Conn, want uint32) {
	t.Helper()
	client, server, err := connAddrs(c)
	if err != nil {
		t.Fatal(err)
	}
	for name, lookup := range map[string]func() (uint32, error){
		"peerSocket": func() (uint32, error) { uid, _, err := peerSocket(c); return uid, err },
		"sockDiag":   func() (uint32, error) { id, err := sockDiag(client, server); return id.uid, err },
		"procSocket": func() (uint32, error) { id, err := procSocket(client, server); return id.uid, err },
	} {
		if uid, err := lookup(); err != nil || uid != want {
			t.Errorf("%s: %s = %d, %v; want %d", network, name, uid, err, want)
		}
	}
	// The server's own end has these addresses the other way round: it is
	// never taken for the client's.
	if id, err := sockDiag(server, netip.AddrPortFrom(server.Addr(), client.Port()+1)); !errors.Is(err, errPeerUnknown) {
		t.Errorf("%s: sockDiag of a connection that does not exist = %d, %v; want errPeerUnknown", network, id.uid, err)
	}
}

// TestPeerUIDMappedIPv4: a dual-stack client's IPv6 socket connected to
// [::ffff:127.0.0.1] reaches an IPv4 listener, which sees 127.0.0.1; the
// client's socket is in the kernel's IPv6 table, and is found there.
func TestPeerUIDMappedIPv4(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no IPv6 socket: %v", err)
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0)
	sa := &syscall.SockaddrInet6{Port: ln.Addr().(*net.TCPAddr).Port}
	copy(sa.Addr[:], netip.MustParseAddr("::ffff:127.0.0.1").AsSlice())
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		t.Skipf("connect to [::ffff:127.0.0.1]: %v", err)
	}
	f := os.NewFile(uintptr(fd), "mapped-client")
	defer f.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	checkPeer(t, "[::ffff:127.0.0.1]", sc, uint32(os.Geteuid()))
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:1F90": "[::ffff:127.0.0.1]:8080",
	} {
		got, err := parseProcAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz:1", "0100007F:zzzz", "01007F:1F90"} {
		if _, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) succeeded", bad)
		}
	}
}
