package localapi

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/tokenagent/tokenagent/ipc"
)

// ErrNoCredentials is returned for connections whose peer credentials could
// not be read; such callers are denied.
var ErrNoCredentials = errors.New("localapi: peer credentials unavailable")

type callerKey struct{}

// callerInfo is what ConnContext attaches to every request.
type callerInfo struct {
	conn   uint64
	caller ipc.Caller
	err    error
}

// CallerFrom returns the peer credentials of the connection a request
// arrived on.
func CallerFrom(ctx context.Context) (ipc.Caller, error) {
	ci, ok := ctx.Value(callerKey{}).(*callerInfo)
	if !ok {
		return ipc.Caller{}, ErrNoCredentials
	}
	return ci.caller, ci.err
}

// readCaller reads the peer credentials of a Unix-socket connection.
func readCaller(c net.Conn) (ipc.Caller, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ipc.Caller{}, fmt.Errorf("%w: %T is not a Unix socket", ErrNoCredentials, c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ipc.Caller{}, fmt.Errorf("%w: %v", ErrNoCredentials, err)
	}
	var caller ipc.Caller
	var credErr error
	if err := raw.Control(func(fd uintptr) { caller, credErr = peerCredentials(int(fd)) }); err != nil {
		return ipc.Caller{}, fmt.Errorf("%w: %v", ErrNoCredentials, err)
	}
	if credErr != nil {
		return ipc.Caller{}, fmt.Errorf("%w: %v", ErrNoCredentials, credErr)
	}
	// The caller chose its program's name: it reaches logs (and terminals)
	// only as text.
	caller.Exe = ipc.SafeText(executable(caller.PID))
	return caller, nil
}
