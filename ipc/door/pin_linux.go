package door

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/tokenagent/tokenagent/ipc"

	"golang.org/x/sys/unix"
)

// pinned is a caller's process, held by its /proc directory: a file
// descriptor opened while the process's pidfd proved it alive, so that it
// names that process and no other for its whole life — once the process
// is gone, every read through it fails, whoever gets the pid next.
// What the process ran when it was pinned (the executable's device and
// inode) is kept, so that a process that execs another program after
// connecting is no longer the caller that connected.
type pinned struct {
	mu  sync.Mutex
	dir int // O_PATH fd of /proc/PID; -1 once closed
	pid int32
	dev uint64
	ino uint64
	exe string
	// exeErr: the agent may not read the process's executable (another
	// user's, and no CAP_SYS_PTRACE). Unit and cgroup still serve; exe
	// and sha256 selectors fail with it.
	exeErr error
}

// pinPeer pins the process at the other end of the Unix socket fd:
// SO_PEERPIDFD where the kernel has it (6.5), which names the very
// process that connected; else pidfd_open of the SO_PEERCRED pid, with a
// check that the process it names holds the connection's other end (a
// pid freed and reused since connect does not).
func pinPeer(fd int, pid int32) (*pinned, error) {
	pidfd, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	if err == nil {
		defer unix.Close(pidfd)
		return pinPidfd(pidfd, nil)
	}
	if !errors.Is(err, unix.ENOPROTOOPT) {
		return nil, fmt.Errorf("SO_PEERPIDFD: the process that connected has exited, or cannot be named: %w", err)
	}
	peer, err := unixPeerInode(fd)
	if err != nil {
		return nil, fmt.Errorf("this kernel has no SO_PEERPIDFD, and the connection's other end is unknown: %w", err)
	}
	return pinPID(pid, peer)
}

// pinPID pins process pid, which must hold the socket inode: how a TCP
// caller (its socket's holder, found by scanning /proc) and, on kernels
// without SO_PEERPIDFD, a Unix socket's peer are pinned.
func pinPID(pid int32, inode uint64) (*pinned, error) {
	pidfd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open(%d): %w", pid, err)
	}
	defer unix.Close(pidfd)
	return pinPidfd(pidfd, func(p *pinned) bool {
		return holds(strconv.Itoa(int(p.pid)), "socket:["+strconv.FormatUint(inode, 10)+"]")
	})
}

// pinPidfd opens the /proc directory of the process pidfd names and
// proves, after opening it (and after check, if any), that the process
// is still alive: then the directory is that process's, not a later one
// with the same pid.
func pinPidfd(pidfd int, check func(*pinned) bool) (*pinned, error) {
	pid, err := pidfdPID(pidfd)
	if err != nil {
		return nil, err
	}
	dir, err := unix.Open("/proc/"+strconv.Itoa(int(pid)), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("process %d has exited", pid)
	}
	if err != nil { // out of descriptors, most often: the agent's trouble, not the caller's
		return nil, resourceErr(fmt.Sprintf("open /proc/%d", pid), err)
	}
	p := &pinned{dir: dir, pid: pid}
	if check != nil && !check(p) {
		p.close()
		return nil, fmt.Errorf("process %d does not hold the connection (its pid was reused, or it passed the socket on)", pid)
	}
	// Signal 0 checks only that the process lives: ESRCH once it has
	// exited. EPERM (the agent may not signal another user's process)
	// means it lives.
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); errors.Is(err, unix.ESRCH) {
		p.close()
		return nil, fmt.Errorf("process %d has exited", pid)
	}
	var st unix.Stat_t
	switch err := unix.Fstatat(dir, "exe", &st, 0); {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		p.exeErr = exeErr(pid, err)
	case err != nil:
		p.close()
		return nil, exeErr(pid, err)
	default:
		p.dev, p.ino = st.Dev, st.Ino
		p.exe, _ = readlinkat(dir, "exe")
	}
	return p, nil
}

// exeErr says why a process's executable cannot be read: most often the
// agent's lack of the right to see another user's program.
func exeErr(pid int32, err error) error {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return fmt.Errorf("the agent (uid %d) may not read the executable of process %d of another user: "+
			"exe and sha256 selectors need the agent to run as root or with CAP_SYS_PTRACE (docs/selectors.md)", os.Geteuid(), pid)
	}
	return fmt.Errorf("process %d has exited (its executable cannot be read: %v)", pid, err)
}

// pidfdPID is the pid of the process pidfd names, in the agent's pid
// namespace, from /proc/self/fdinfo (Linux 5.3).
func pidfdPID(pidfd int) (int32, error) {
	data, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return 0, resourceErr("read pidfd info", err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			pid, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
			switch {
			case err != nil:
				return 0, fmt.Errorf("pidfd info: pid %q", strings.TrimSpace(v))
			case pid == 0: // the kernel's word for a process outside the agent's pid namespace
				return 0, errors.New("the process that connected is in another pid namespace, where the agent cannot read it (a container: run the agent with the host's pid namespace)")
			case pid < 0:
				return 0, errors.New("the process that connected has exited")
			}
			return int32(pid), nil
		}
	}
	return 0, errors.New("pidfd info names no pid")
}

func readlinkat(dir int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Identity reads the pinned process as it is now: its executable (which
// must be the one it ran when pinned), cgroup and unit.
func (p *pinned) Identity() (ipc.ProcessIdentity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir < 0 {
		return ipc.ProcessIdentity{}, errors.New("the connection is closed")
	}
	id := ipc.ProcessIdentity{PID: p.pid, ExeErr: p.exeErr}
	var st unix.Stat_t
	if p.exeErr == nil {
		if err := unix.Fstatat(p.dir, "exe", &st, 0); err != nil {
			return ipc.ProcessIdentity{}, exeErr(p.pid, err)
		}
		id.Exe, _ = readlinkat(p.dir, "exe")
		if st.Dev != p.dev || st.Ino != p.ino {
			return ipc.ProcessIdentity{}, fmt.Errorf("process %d runs another program (%s) than when it connected (%s): refused, whatever it runs now",
				p.pid, ipc.SafeText(id.Exe), ipc.SafeText(p.exe))
		}
	}
	cg, err := p.cgroup()
	if err != nil {
		return ipc.ProcessIdentity{}, fmt.Errorf("process %d: %w", p.pid, err)
	}
	id.Cgroup, id.Unit = cg, ipc.UnitOf(cg)
	id.IsExe = func(path string) bool {
		var at unix.Stat_t
		return p.exeErr == nil && unix.Stat(path, &at) == nil && at.Dev == st.Dev && at.Ino == st.Ino
	}
	seen := digestKey{st.Dev, st.Ino, st.Size, st.Mtim, st.Ctim}
	id.SHA256 = func() (string, error) { return p.digest(seen) }
	return id, nil
}

// cgroup reads the process's cgroup v2 path (the "0::" line), or on a
// hybrid cgroup v1 host systemd's own hierarchy.
func (p *pinned) cgroup() (string, error) {
	fd, err := unix.Openat(p.dir, "cgroup", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("has exited (its cgroup cannot be read: %v)", err)
	}
	f := os.NewFile(uintptr(fd), "cgroup")
	defer f.Close()
	var v1 string
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		line := sc.Text()
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path, nil
		}
		if _, path, ok := strings.Cut(line, ":name=systemd:"); ok {
			v1 = path
		}
	}
	if v1 != "" {
		return v1, nil
	}
	return "", errors.New("its cgroup is unknown (no cgroup v2 or systemd hierarchy)")
}

// digest is the SHA-256 of the executable the process runs, opened
// through the process (the very file, even if replaced or deleted on
// disk since), and read once per version of that file: seen, the version
// Identity found, is looked up first.
func (p *pinned) digest(seen digestKey) (string, error) {
	if sum, ok := digests.get(seen); ok && p.exeErr == nil {
		return sum, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir < 0 {
		return "", errors.New("the connection is closed")
	}
	if p.exeErr != nil {
		return "", p.exeErr
	}
	fd, err := unix.Openat(p.dir, "exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", exeErr(p.pid, err)
	}
	f := os.NewFile(uintptr(fd), "exe")
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	if st.Dev != p.dev || st.Ino != p.ino {
		return "", fmt.Errorf("process %d runs another program than when it connected", p.pid)
	}
	key := digestKey{st.Dev, st.Ino, st.Size, st.Mtim, st.Ctim}
	if sum, ok := digests.get(key); ok {
		return sum, nil
	}
	if st.Size > maxHashed {
		return "", fmt.Errorf("the executable of process %d is %d MiB, more than the %d MiB the agent hashes for a sha256 selector", p.pid, st.Size>>20, maxHashed>>20)
	}
	hashing <- struct{}{}
	defer func() { <-hashing }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read the executable of process %d: %w", p.pid, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	digests.put(key, sum)
	return sum, nil
}

func (p *pinned) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir >= 0 {
		unix.Close(p.dir)
		p.dir = -1
	}
}

// maxHashed bounds the executables a sha256 selector hashes, and hashing
// how many are hashed at once: callers who exec ever new versions of a
// huge file cost the agent a bounded amount of reading.
const maxHashed = 512 << 20

var hashing = make(chan struct{}, 2)

// digestKey is one version of one file: a write changes its ctime.
type digestKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

// digests remembers executables' SHA-256 by file version, so that a
// program's callers cost one hash, not one per connection. It holds at
// most 256 entries (forgotten all at once when full: a host runs fewer
// programs than that that ask for tokens).
var digests = &digestCache{m: map[digestKey]string{}}

type digestCache struct {
	mu sync.Mutex
	m  map[digestKey]string
}

func (c *digestCache) get(k digestKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[k]
	return s, ok
}

func (c *digestCache) put(k digestKey, sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= 256 {
		clear(c.m)
	}
	c.m[k] = sum
}

// unixPeerInode asks the kernel (sock_diag, UNIX_DIAG_PEER) for the inode
// of the other end of the Unix socket fd.
func unixPeerInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	nl, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.NETLINK_INET_DIAG)
	if err != nil {
		return 0, resourceErr("sock_diag", err)
	}
	defer syscall.Close(nl)
	const (
		unixDiagReqLen = 24 // struct unix_diag_req
		showPeer       = 4  // UDIAG_SHOW_PEER
		diagPeer       = 2  // UNIX_DIAG_PEER
		unixDiagMsgLen = 16 // struct unix_diag_msg
	)
	req := make([]byte, nlmsgHdrLen+unixDiagReqLen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], syscall.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1)
	r := req[nlmsgHdrLen:]
	r[0] = syscall.AF_UNIX
	binary.NativeEndian.PutUint32(r[4:], ^uint32(0))     // every state
	binary.NativeEndian.PutUint32(r[8:], uint32(st.Ino)) // this end
	binary.NativeEndian.PutUint32(r[12:], showPeer)      //
	binary.NativeEndian.PutUint32(r[16:], ^uint32(0))    // no cookie
	binary.NativeEndian.PutUint32(r[20:], ^uint32(0))    //
	if err := syscall.Sendto(nl, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, resourceErr("sock_diag", err)
	}
	buf := make([]byte, 4096)
	n, _, err := syscall.Recvfrom(nl, buf, 0)
	if err != nil {
		return 0, resourceErr("sock_diag", err)
	}
	if n < nlmsgHdrLen+unixDiagMsgLen || binary.NativeEndian.Uint16(buf[4:]) != sockDiagByFamily {
		return 0, errors.New("sock_diag: no answer for the socket (is unix_diag available?)")
	}
	attrs := buf[nlmsgHdrLen+unixDiagMsgLen : min(n, int(binary.NativeEndian.Uint32(buf[0:])))]
	for len(attrs) >= 4 {
		l, typ := int(binary.NativeEndian.Uint16(attrs[0:])), binary.NativeEndian.Uint16(attrs[2:])
		if l < 4 || l > len(attrs) {
			break
		}
		if typ == diagPeer && l >= 8 {
			return uint64(binary.NativeEndian.Uint32(attrs[4:])), nil
		}
		attrs = attrs[min(len(attrs), (l+3)&^3):]
	}
	return 0, errors.New("sock_diag: the socket has no peer")
}
