package door

import (
	"net"
	"syscall"

	"github.com/tokenagent/tokenagent/ipc"
)

// pinFailed is the process of a caller the door could not pin: every
// process selector fails for it, saying why.
type pinFailed struct{ err error }

func (p pinFailed) Identity() (ipc.ProcessIdentity, error) { return ipc.ProcessIdentity{}, p.err }

// pinUnixConn pins the process at the other end of a Unix socket
// connection (see pinPeer).
func pinUnixConn(c net.Conn, pid int32) ipc.Process {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return pinFailed{ErrNoCredentials}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return pinFailed{err}
	}
	var p *pinned
	var pinErr error
	if err := raw.Control(func(fd uintptr) { p, pinErr = pinPeer(int(fd), pid) }); err != nil {
		return pinFailed{err}
	}
	if pinErr != nil {
		return pinFailed{pinErr}
	}
	return p
}

// unpin lets go of a pinned process (its /proc directory's descriptor).
func unpin(p ipc.Process) {
	if p, ok := p.(*pinned); ok {
		p.close()
	}
}
