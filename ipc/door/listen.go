package door

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// ListenConfig says how to create the socket.
type ListenConfig struct {
	// Mode is the socket file's permission bits (e.g. 0600, 0660, 0666).
	// Peer credentials are checked on every request whatever the mode.
	Mode fs.FileMode
	// GID, when not -1, is the socket's group (and its directory's, when
	// the agent creates it).
	GID int
	// MaxConnections caps open connections; beyond it a connection gets
	// an immediate 503 and is closed. Default 2048.
	MaxConnections int
	// MaxConnectionsPerUID caps one uid's open connections, so that no
	// user can take every slot; default 128 (at most MaxConnections).
	MaxConnectionsPerUID int
	// MaxUnidentifiedConnections caps the open connections of callers
	// who cannot be identified (another network namespace), in a budget
	// of their own: identified users cannot take it, and they cannot
	// take the others'. Default 16.
	MaxUnidentifiedConnections int
	// AgentUID is the agent's own user. Its connections and root's are
	// never refused for others' connections: they have a budget of their
	// own, MaxConnections more, so the operator can always get through,
	// and a storm of their own is bounded too.
	AgentUID uint32
	// Pin, if set, says whether callers' processes are to be pinned (by
	// pidfd) as their connections are accepted: true while some profile
	// has a process selector (exe, sha256, unit, cgroup). Root's and the
	// agent's user's are never pinned: they may use every profile.
	Pin func() bool
}

// Listen creates the Unix socket at path. A socket that answers is never
// removed (another agent is serving on it: that is an error); a socket
// nobody listens on is stale and replaced; anything else at path is left
// alone and reported. The directory is created if missing; the socket's
// mode comes from an explicit umask at bind and its group from Lchown,
// never from the process's umask or a chmod by path. Closing the
// listener removes the socket only if it is still the one created.
func Listen(path string, cfg ListenConfig) (net.Listener, error) {
	cfg = cfg.withDefaults()
	if err := prepareDir(filepath.Dir(path), cfg); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// The mode comes from the umask at bind, never from a chmod by path
	// afterwards (which a rename and a symlink could point at another
	// file). The umask is process-wide: Listen runs at start, before
	// anything else creates files.
	var ln net.Listener
	var err error
	withUmask(0o777&^cfg.Mode.Perm(), func() { ln, err = net.Listen("unix", path) })
	if err != nil {
		return nil, fmt.Errorf("socket: listen on %s: %w", path, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // Close removes the socket only if it is still ours
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket: %s: %w", path, err)
	}
	if cfg.GID >= 0 {
		if err := os.Lchown(path, -1, cfg.GID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket: chgrp %s to gid %d: %w", path, cfg.GID, err)
		}
	}
	return &listener{Listener: ln, path: path, created: fi, cfg: cfg, identify: unixIdentity, perUID: map[uint32]int{}}, nil
}

func (cfg ListenConfig) withDefaults() ListenConfig {
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 2048
	}
	if cfg.MaxConnectionsPerUID <= 0 {
		cfg.MaxConnectionsPerUID = 128
	}
	cfg.MaxConnectionsPerUID = min(cfg.MaxConnectionsPerUID, cfg.MaxConnections)
	if cfg.MaxUnidentifiedConnections <= 0 {
		cfg.MaxUnidentifiedConnections = 16
	}
	return cfg
}

// Limit wraps another door's listener (a loopback TCP one) with the
// socket's rules: identify (UnixCaller, TCPCaller) tells who each
// connection is, and the same caps apply per uid and in all. A connection
// identify cannot place still comes through, with the error for the
// handler to judge (CallerFrom), in the unidentified callers' own
// budget (MaxUnidentifiedConnections).
func Limit(ln net.Listener, cfg ListenConfig, identify func(net.Conn) (ipc.Caller, error)) net.Listener {
	return limit(ln, cfg, func(c net.Conn, _ func(uint32) bool) (ipc.Caller, func(*ipc.Caller) string, error) {
		caller, err := identify(c)
		return caller, nil, err
	})
}

// LimitUnix wraps a Unix socket listener made elsewhere (passed by
// systemd) with the rules Listen's has: the same caps, each caller
// identified by its peer credentials and, as cfg.Pin says, its process
// pinned at accept.
func LimitUnix(ln net.Listener, cfg ListenConfig) net.Listener { return limit(ln, cfg, unixIdentity) }

func limit(ln net.Listener, cfg ListenConfig, identify identifier) net.Listener {
	return &listener{Listener: ln, cfg: cfg.withDefaults(), identify: identify, perUID: map[uint32]int{}}
}

// identifier tells who a connection is at accept, as far as the caps
// need; what costs more (a TCP caller's groups) it may leave to finish,
// which the connection's first request calls, and which says why the
// rest is unknown ("" when it is known). With pin, it pins the caller's
// process too (ipc.Caller.Process), at accept or in finish, when pin
// says so for the caller's uid.
type identifier func(c net.Conn, pin func(uid uint32) bool) (caller ipc.Caller, finish func(*ipc.Caller) string, err error)

// unixIdentity identifies a Unix socket's caller by its peer credentials
// and, with pin, pins its process at once: a process may exec another
// program the moment it has connected.
func unixIdentity(c net.Conn, pin func(uint32) bool) (ipc.Caller, func(*ipc.Caller) string, error) {
	caller, err := UnixCaller(c)
	if err == nil && pin(caller.UID) {
		caller.Process = pinUnixConn(c, caller.PID)
	}
	return caller, nil, err
}

// prepareDir creates the socket's directory with a mode that lets exactly
// the socket's audience reach it: 0700 for an owner-only socket, 0750
// (group set) for a group socket, 0755 when others may connect. An
// existing directory's mode is left alone unless the agent created it.
func prepareDir(dir string, cfg ListenConfig) error {
	mode := fs.FileMode(0o700)
	switch {
	case cfg.Mode&0o007 != 0:
		mode = 0o755
	case cfg.Mode&0o070 != 0:
		mode = 0o750
	}
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("socket: socket directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("socket: chmod %s: %w", dir, err)
	}
	if cfg.GID >= 0 && mode&0o070 != 0 {
		if err := os.Lchown(dir, -1, cfg.GID); err != nil {
			return fmt.Errorf("socket: chgrp %s: %w", dir, err)
		}
	}
	return nil
}

// ErrInUse: another process is serving on the socket.
var ErrInUse = errors.New("socket: socket in use")

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket: %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket: %s exists and is not a socket; remove it or choose another socket path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: another agent is serving on %s; stop it (or use --socket to pick another path)", ErrInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("socket: %s exists and cannot be probed (%v); remove it if no agent is running", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("socket: remove stale socket %s: %w", path, err)
	}
	return nil
}

// listener caps connections and reads peer credentials at accept.
type listener struct {
	net.Listener
	path      string
	created   fs.FileInfo // the socket file as bound: Close removes only this one
	closeOnce sync.Once
	cfg       ListenConfig
	identify  identifier
	accepted  atomic.Uint64

	mu           sync.Mutex
	open         int            // identified connections counted against the caps
	perUID       map[uint32]int // of them, by uid
	unidentified int            // connections of callers nobody could identify
	privileged   int            // root's and the agent's user's, in a budget of their own
}

// Close stops listening and removes the socket file if it is still the
// one Listen created (same inode): a file someone else put at the path
// meanwhile is left alone.
func (l *listener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() {
		if l.path == "" {
			return
		}
		if fi, lerr := os.Lstat(l.path); lerr == nil && os.SameFile(fi, l.created) {
			os.Remove(l.path)
		}
	})
	return err
}

// Accept reads each connection's peer credentials and admits it within
// the caps: MaxConnections in all and MaxConnectionsPerUID per uid, so
// that one user holding idle connections cannot lock the others out.
// Root and the agent's own user are never refused for the others'
// connections: they have MaxConnections of their own. Callers nobody can
// identify have a small budget of their own (MaxUnidentifiedConnections),
// apart from every user's. Every connection is thus counted in some
// budget: what a storm of connections can hold is bounded.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		caller, finish, credErr := l.identify(c, l.pins)
		pc := &peerConn{Conn: c, release: func() {}}
		switch {
		case credErr != nil:
			if !l.take(&l.unidentified, l.cfg.MaxUnidentifiedConnections) {
				go refuseOverloaded(c)
				continue
			}
			pc.release = func() { l.give(&l.unidentified) }
		case caller.UID == 0 || caller.UID == l.cfg.AgentUID:
			// Root and the agent's user may use every profile: their
			// groups decide nothing, and are not looked for.
			finish = nil
			if !l.take(&l.privileged, l.cfg.MaxConnections) {
				go refuseOverloaded(c)
				continue
			}
			pc.release = func() { l.give(&l.privileged) }
		default:
			uid := caller.UID
			if !l.admit(uid) {
				unpin(caller.Process) // pinned at identify: a refused connection holds nothing
				go refuseOverloaded(c)
				continue
			}
			pc.release = func() { l.leave(uid) }
		}
		pc.info = newConnInfo(l.accepted.Add(1), caller, finish, credErr)
		return pc, nil
	}
}

// pins says whether uid's processes are pinned: while ListenConfig.Pin
// says so, and never root's or the agent's user's, who may use every
// profile.
func (l *listener) pins(uid uint32) bool {
	return l.cfg.Pin != nil && uid != 0 && uid != l.cfg.AgentUID && l.cfg.Pin()
}

// take counts one more connection in a budget of the listener's (n), if
// it has room for it under most; give counts one less.
func (l *listener) take(n *int, most int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if *n >= most {
		return false
	}
	*n++
	return true
}

func (l *listener) give(n *int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*n--
}

func (l *listener) admit(uid uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.cfg.MaxConnections || l.perUID[uid] >= l.cfg.MaxConnectionsPerUID {
		return false
	}
	l.open++
	l.perUID[uid]++
	return true
}

func (l *listener) leave(uid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perUID[uid]--; l.perUID[uid] <= 0 {
		delete(l.perUID, uid)
	}
}

// overloaded is the whole answer to a connection beyond the cap, made on
// first use rather than at every program start.
var overloaded = sync.OnceValue(func() []byte {
	body := `{"error":"` + ipc.CodeOverloaded + `","error_description":"the agent is at its connection cap, for all users or for yours; retry shortly"}`
	return []byte(fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"+
		"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
})

func refuseOverloaded(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(overloaded())
	c.Close()
}

// peerConn is an accepted connection with its peer's credentials.
type peerConn struct {
	net.Conn
	info    *connInfo
	once    sync.Once
	release func()
}

func (c *peerConn) Close() error {
	c.once.Do(func() {
		c.release()
		c.info.unpin()
	})
	return c.Conn.Close()
}

// Write passes the server's answers through, except the plain-text
// errors net/http writes by itself before any handler runs (a header too
// large: 431; a request it cannot parse: 400): those become JSON errors
// like every other answer of the agent's.
func (c *peerConn) Write(p []byte) (int, error) {
	if status, ok := netHTTPError(p); ok {
		body := `{"error":"` + ipc.CodeInvalidRequest + `","error_description":"` + status + `: the agent could not read the request (headers too large, or not HTTP/1.1)"}`
		if _, err := fmt.Fprintf(c.Conn, "HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// netHTTPError recognises net/http's own error answer: a 4xx status with
// the plain-text headers it writes, which no handler of ours sends.
func netHTTPError(p []byte) (status string, ok bool) {
	const prefix, headers = "HTTP/1.1 4", "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	if !bytes.HasPrefix(p, []byte(prefix)) { // every answer of ours: no copy made
		return "", false
	}
	s := string(p[:min(len(p), 256)])
	end := strings.Index(s, headers)
	if !strings.HasPrefix(s, prefix) || end < 0 {
		return "", false
	}
	return s[len("HTTP/1.1 "):end], true
}
