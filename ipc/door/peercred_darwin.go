package door

import (
	"fmt"

	"github.com/tokenagent/tokenagent/ipc"

	"golang.org/x/sys/unix"
)

// peerCredentials reads LOCAL_PEERCRED (uid and groups) and LOCAL_PEERPID.
func peerCredentials(fd int) (ipc.Caller, error) {
	xu, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return ipc.Caller{}, fmt.Errorf("LOCAL_PEERCRED: %w", err)
	}
	c := ipc.Caller{UID: xu.Uid}
	if xu.Ngroups > 0 {
		c.GID = xu.Groups[0]
		c.Groups = append([]uint32(nil), xu.Groups[1:xu.Ngroups]...)
	}
	if pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
		c.PID = int32(pid)
	}
	return c, nil
}

// executable is not looked up on macOS (it needs proc_pidpath via cgo).
func executable(int32) string { return "" }
