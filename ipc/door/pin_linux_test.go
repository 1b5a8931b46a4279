package door

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenagent/tokenagent/ipc"
)

// pinnedSocket listens on a Unix socket another user may reach, with
// every caller's process pinned.
func pinnedSocket(t *testing.T) (net.Listener, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a caller as another user")
	}
	path := filepath.Join(sharedDir(t), "agent.sock")
	ln, err := Listen(path, ListenConfig{Mode: 0o666, Pin: func() bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, path
}

func acceptCaller(t *testing.T, ln net.Listener) (net.Conn, ipc.Caller) {
	t.Helper()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.(*peerConn).info.get()
}

// TestPinnedCallerExecsAndExits: a caller's process is pinned when it
// connects; it is that program (path, digest, cgroup) while it runs it,
// and no longer the caller once it execs another program on the same
// connection, or exits.
func TestPinnedCallerExecsAndExits(t *testing.T) {
	ln, path := pinnedSocket(t)
	d := startDialer(t, 4242, "unix:"+path, 0)
	_, caller := acceptCaller(t, ln)
	if _, ok := caller.Process.(*pinned); !ok {
		t.Fatalf("caller uid %d: process %#v, want pinned", caller.UID, caller.Process)
	}
	id, err := caller.Process.Identity()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.ReadFile("/proc/self/cgroup")
	wantCgroup := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(self)), "0::"))
	if id.Exe != d.bin || id.PID != int32(d.pid) || (strings.HasPrefix(string(self), "0::") && id.Cgroup != wantCgroup) {
		t.Errorf("pinned caller = exe %q pid %d cgroup %q; want %q, %d, %q", id.Exe, id.PID, id.Cgroup, d.bin, d.pid, wantCgroup)
	}
	data, _ := os.ReadFile(d.bin)
	sum := sha256.Sum256(data)
	if got, err := id.SHA256(); err != nil || got != hex.EncodeToString(sum[:]) {
		t.Errorf("digest of the caller's executable = %q, %v; want %x", got, err, sum)
	}

	io.WriteString(d.stdin, "exec\n")
	if line, err := d.stdout.ReadString('\n'); line != "execed\n" {
		t.Fatalf("dialer did not exec: %q %v", line, err)
	}
	if id, err := caller.Process.Identity(); err == nil || !strings.Contains(err.Error(), "runs another program") {
		t.Errorf("after the caller exec'd sh: identity %+v, %v; want refused as another program", id, err)
	}
	d.hangUp() // sh reads EOF and exits; its pid may be anyone's next
	if id, err := caller.Process.Identity(); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("after the caller exited: identity %+v, %v; want exited", id, err)
	}
}

// TestPinnedOnlyWhenAsked: root's connections, and anyone's while no
// profile has a process selector, are not pinned.
func TestPinnedOnlyWhenAsked(t *testing.T) {
	ln, path := pinnedSocket(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, caller := acceptCaller(t, ln); caller.Process != nil {
		t.Errorf("root's connection pinned: %#v", caller.Process)
	}
}

// TestPinByPIDChecksTheSocket: where the kernel has no SO_PEERPIDFD, a
// pid is pinned only if its process holds the connection's other end
// (sock_diag names it): a pid reused by another process is not.
func TestPinByPIDChecksTheSocket(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	f, _ := server.(*net.UnixConn).File()
	defer f.Close()
	peer, err := unixPeerInode(int(f.Fd()))
	if err != nil {
		t.Skipf("sock_diag for Unix sockets: %v", err)
	}
	var st syscall.Stat_t
	cf, _ := client.(*net.UnixConn).File()
	defer cf.Close()
	syscall.Fstat(int(cf.Fd()), &st)
	if peer != st.Ino {
		t.Fatalf("peer inode = %d, want the client's socket %d", peer, st.Ino)
	}
	p, err := pinPID(int32(os.Getpid()), peer)
	if err != nil {
		t.Fatalf("this process, which holds the peer: %v", err)
	}
	p.close()
	if p, err := pinPID(int32(os.Getpid()), peer+1_000_000); err == nil {
		p.close()
		t.Error("pinned a process that does not hold the socket")
	}
}

// TestPinnedTCPCaller: on the loopback TCP doors the caller's process is
// the one holding the client's socket, pinned on the first request.
func TestPinnedTCPCaller(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a caller as another user")
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitTCP(tcp, ListenConfig{Pin: func() bool { return true }})
	defer ln.Close()
	d := startDialer(t, 4242, tcp.Addr().String(), 0)
	_, caller := acceptCaller(t, ln)
	id, err := caller.Process.Identity()
	if err != nil || id.Exe != d.bin || id.PID != int32(d.pid) {
		t.Errorf("TCP caller's pinned process = %+v, %v; want %s, pid %d", id, err, d.bin, d.pid)
	}
}

// servePinned is the agent of TestPinnedByAnAgentNotRoot, run as an
// ordinary user: it pins the first caller of a socket at path and prints
// what it can read of the caller's process.
func servePinned(path string) {
	ln, err := Listen(path, ListenConfig{Mode: 0o666, GID: -1, AgentUID: uint32(os.Geteuid()), Pin: func() bool { return true }})
	if err != nil {
		os.Stdout.WriteString("listen: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("listening\n")
	c, err := ln.Accept()
	if err != nil {
		os.Exit(1)
	}
	id, err := c.(*peerConn).info.get().Process.Identity()
	switch {
	case err != nil:
		os.Stdout.WriteString("error: " + err.Error() + "\n")
	case id.ExeErr != nil:
		os.Stdout.WriteString("cgroup " + id.Cgroup + "; exe unknown: " + id.ExeErr.Error() + "\n")
	default:
		os.Stdout.WriteString("cgroup " + id.Cgroup + "; exe " + id.Exe + "\n")
	}
	os.Exit(0)
}

// TestPinnedByAnAgentNotRoot: an agent that is neither root nor the
// caller's user (the packaged service) pins another user's process: it
// may not signal it (EPERM from the pidfd's signal 0 means alive, not
// gone) nor read its executable without CAP_SYS_PTRACE, but it reads its
// cgroup, so unit and cgroup selectors work, and exe selectors say why
// they cannot.
func TestPinnedByAnAgentNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the agent and its caller as other users")
	}
	dir := sharedDir(t)
	sockDir := filepath.Join(dir, "run")
	os.Mkdir(sockDir, 0o755)
	os.Chown(sockDir, 4243, 4243)
	bin := filepath.Join(dir, "agent.test")
	copySelf(t, bin)
	path := filepath.Join(sockDir, "agent.sock")
	agent := exec.Command(bin)
	agent.Env = []string{"DOOR_TEST_PIN_SERVE=" + path, "GORACE=atexit_sleep_ms=0"}
	agent.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4243, Gid: 4243, Groups: []uint32{}}}
	out, _ := agent.StdoutPipe()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer agent.Wait()
	defer agent.Process.Kill()
	lines := bufio.NewReader(out)
	if line, _ := lines.ReadString('\n'); line != "listening\n" {
		t.Fatalf("agent as uid 4243: %q", line)
	}
	startDialer(t, 4242, "unix:"+path, 0)
	line, _ := lines.ReadString('\n')
	if !strings.HasPrefix(line, "cgroup /") || !strings.Contains(line, "exe unknown") || !strings.Contains(line, "CAP_SYS_PTRACE") {
		t.Errorf("agent as uid 4243 pinning uid 4242's process: %q; want its cgroup, and the exe unknown for want of CAP_SYS_PTRACE", line)
	}
}

// TestRefusedConnectionsHoldNoPin: a connection beyond its user's cap is
// refused, and the process it pinned is let go at once: a user opening
// connection after connection cannot run the agent out of descriptors.
func TestRefusedConnectionsHoldNoPin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run callers as another user")
	}
	path := filepath.Join(sharedDir(t), "agent.sock")
	ln, err := Listen(path, ListenConfig{Mode: 0o666, MaxConnectionsPerUID: 1, Pin: func() bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	startDialer(t, 4242, "unix:"+path, 0)
	acceptCaller(t, ln)
	go ln.Accept() // refuses the next ones; returns only at Close
	for range 10 { // each refused, its process kept alive
		d := startDialer(t, 4242, "unix:"+path, 0)
		io.WriteString(d.stdin, "read\n")
		if line, _ := d.stdout.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 503") {
			t.Fatalf("connection beyond the cap: %q, want 503", line)
		}
	}
	if n := procDirs(t); n != 1 {
		t.Errorf("%d /proc/PID directories held after 10 refused connections and 1 admitted; want 1", n)
	}
}

// procDirs counts this process's descriptors of /proc/PID directories:
// the pinned processes.
func procDirs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "/proc/") && !strings.Contains(target[len("/proc/"):], "/") {
			n++
		}
	}
	return n
}
