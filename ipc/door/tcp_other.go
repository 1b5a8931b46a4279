//go:build !linux

package door

import (
	"errors"
	"net"
)

const tcpIdentifies = false

// peerSocket: only Linux says here who owns the other end of a TCP
// connection (sock_diag, /proc/net/tcp); elsewhere callers are
// unidentified and need the profile's local_secret.
func peerSocket(net.Conn) (uid uint32, inode uint64, err error) { return 0, 0, errPeerUnknown }

func socketHolder(uint32, uint64) (gid uint32, groups []uint32, pid int32, holders int, err error) {
	return 0, nil, 0, 0, errors.New("the process holding a TCP socket is not looked up on this platform")
}
