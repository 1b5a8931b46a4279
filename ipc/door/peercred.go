package door

import (
	"errors"
	"fmt"
	"net"

	"github.com/tokenagent/tokenagent/ipc"
)

// ErrNoCredentials is returned for connections whose peer credentials could
// not be read; such callers are denied.
var ErrNoCredentials = errors.New("peer credentials unavailable")

// UnixCaller reads the peer credentials of a Unix-socket connection:
// uid, gid, supplementary groups and pid. The program's name is not read
// here (a path lookup per connection that only some log lines need): see
// RequestEvent.Executable.
func UnixCaller(c net.Conn) (ipc.Caller, error) {
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
	return caller, nil
}
