package door

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/tokenagent/tokenagent/ipc"

	"golang.org/x/sys/unix"
)

// peerCredentials reads SO_PEERCRED and, where the kernel has it (4.13+),
// SO_PEERGROUPS.
func peerCredentials(fd int) (ipc.Caller, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return ipc.Caller{}, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	c := ipc.Caller{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
	c.Groups = peerGroups(fd)
	return c, nil
}

// peerGroups returns the peer's supplementary groups, or nil. x/sys has no
// wrapper for SO_PEERGROUPS, so the getsockopt call is made directly.
func peerGroups(fd int) []uint32 {
	buf := make([]uint32, 64)
	for range 3 {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch errno {
		case 0:
			return buf[:size/4]
		case unix.ERANGE:
			buf = make([]uint32, size/4+1)
		default:
			return nil
		}
	}
	return nil
}

// executable is the peer's program, for denial logs; "" when unknown.
func executable(pid int32) string {
	if pid <= 0 {
		return ""
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return exe
}
