package ipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
)

// Caller is who is on the other end of a connection, as the kernel says.
type Caller struct {
	UID uint32
	GID uint32
	// Groups are the supplementary groups, when the platform reports them.
	Groups []uint32
	// PID is the peer's process id when known (0 otherwise), and Exe its
	// executable when it could be read at accept. Both are for logs only:
	// pids are reused, so nothing is authorised by them.
	PID int32
	Exe string
}

// InGroup reports whether gid is the caller's primary or a supplementary group.
func (c Caller) InGroup(gid uint32) bool { return c.GID == gid || slices.Contains(c.Groups, gid) }

func (c Caller) String() string { return fmt.Sprintf("uid=%d gid=%d pid=%d", c.UID, c.GID, c.PID) }

// ErrNoCredentials is returned for connections whose peer credentials could
// not be read; such callers are denied.
var ErrNoCredentials = errors.New("ipc: peer credentials unavailable")

type callerKey struct{}

// callerInfo is what ConnContext attaches to every request.
type callerInfo struct {
	caller Caller
	err    error
}

// CallerFrom returns the peer credentials of the connection a request
// arrived on.
func CallerFrom(ctx context.Context) (Caller, error) {
	ci, ok := ctx.Value(callerKey{}).(*callerInfo)
	if !ok {
		return Caller{}, ErrNoCredentials
	}
	return ci.caller, ci.err
}

// readCaller reads the peer credentials of a Unix-socket connection.
func readCaller(c net.Conn) (Caller, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Caller{}, fmt.Errorf("%w: %T is not a Unix socket", ErrNoCredentials, c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Caller{}, fmt.Errorf("%w: %v", ErrNoCredentials, err)
	}
	var caller Caller
	var credErr error
	if err := raw.Control(func(fd uintptr) { caller, credErr = peerCredentials(int(fd)) }); err != nil {
		return Caller{}, fmt.Errorf("%w: %v", ErrNoCredentials, err)
	}
	if credErr != nil {
		return Caller{}, fmt.Errorf("%w: %v", ErrNoCredentials, credErr)
	}
	caller.Exe = executable(caller.PID)
	return caller, nil
}
