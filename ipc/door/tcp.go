package door

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/tokenagent/tokenagent/ipc"
)

// errPeerUnknown: the connection's client end is not a socket of this
// network namespace (or it closed), so the kernel cannot say who owns it.
var errPeerUnknown = fmt.Errorf("%w: the client end of the connection is not a socket of this network namespace (a caller in another network namespace or container, or a client that hung up)", ErrNoCredentials)

// ErrNoResources: the agent could not identify a caller for lack of
// resources of its own (file descriptors, kernel buffers). It is
// temporary: the token endpoint answers it 503, never invalid_client,
// which OAuth clients take for a verdict on their credentials.
var ErrNoResources = errors.New("the agent is out of resources to identify the caller (file descriptors or kernel buffers)")

// resourceErr marks err as ErrNoResources when it is the kernel running
// out of something the agent needs to identify a caller.
func resourceErr(what string, err error) error {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return fmt.Errorf("%w: %s: %w", ErrNoResources, what, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// TCPIdentifies reports whether this platform's kernel says who owns the
// client end of a loopback TCP connection. Where it does not (macOS, …),
// every TCP caller is unidentified and may only use a profile through
// its local_secret.
const TCPIdentifies = tcpIdentifies

// ListenLoopback opens a TCP listener at addr, which must be a loopback
// IP address and port, with the socket's connection caps; each caller is
// identified by the owner of the client's socket at accept and by the
// process holding it on the connection's first request (TCPCaller).
// what names the setting in errors ("token_endpoint").
func ListenLoopback(what, addr string, lc ListenConfig) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !ipc.IsLoopbackIP(host) {
		return nil, fmt.Errorf("%s %q: only a loopback IP address may serve tokens over TCP", what, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, addr, err)
	}
	return LimitTCP(ln, lc), nil
}

// LimitTCP wraps a loopback TCP listener with the socket's caps, each
// caller identified by the owner of the client's socket at accept and by
// the process holding it on the connection's first request — and only
// when its groups can matter (not for root or the agent's own user): the
// scan of /proc that finds the process costs more than a request.
func LimitTCP(ln net.Listener, lc ListenConfig) net.Listener {
	return limit(ln, lc, tcpIdentity)
}

// TCPCaller identifies the client of a loopback TCP connection: its uid
// is the owner of the client's socket as the kernel says (IPv4, IPv6 and
// IPv4-mapped IPv6 alike); its gid and groups are those of the process
// holding that socket (found by the socket's inode), as on the Unix
// socket, never the user database's. When no such process is found,
// the caller has no group (group rules do not match; uid rules still
// do). A client in another network namespace, or on a platform where
// the kernel does not say, is unknown.
func TCPCaller(c net.Conn) (ipc.Caller, error) {
	caller, finish, err := tcpIdentity(c, func(uint32) bool { return false })
	if err != nil {
		return caller, err
	}
	finish(&caller)
	return caller, nil
}

// tcpIdentity learns the uid at accept (one sock_diag request) and
// leaves the process's groups, which cost a scan of the uid's processes,
// to the connection's first request, off the accept loop. With pin, that
// scan also pins the process holding the socket, for process selectors:
// there must be exactly one.
func tcpIdentity(c net.Conn, pins func(uint32) bool) (ipc.Caller, func(*ipc.Caller) string, error) {
	uid, inode, err := peerSocket(c)
	if err != nil {
		return ipc.Caller{}, nil, err
	}
	pin := pins(uid)
	return ipc.Caller{UID: uid, GID: noGroup}, func(caller *ipc.Caller) string {
		gid, groups, pid, holders, err := socketHolder(uid, inode)
		if err != nil {
			if pin {
				caller.Process = pinFailed{err}
			}
			return fmt.Sprintf("groups unknown, so group rules do not match (uid rules still do): %v", err)
		}
		caller.GID, caller.Groups, caller.PID = gid, groups, pid
		switch {
		case !pin:
		case holders > 1:
			caller.Process = pinFailed{fmt.Errorf("%d processes hold the client's socket (a fork): process selectors need exactly one", holders)}
		default:
			if p, err := pinPID(pid, inode); err != nil {
				caller.Process = pinFailed{err}
			} else {
				caller.Process = p
			}
		}
		return ""
	}, nil
}

// noGroup is the gid of a caller whose groups are unknown: no group.
const noGroup = ^uint32(0)
