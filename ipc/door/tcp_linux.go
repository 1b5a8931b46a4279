package door

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

const tcpIdentifies = true

// socketID is the client's socket as the kernel knows it: its owner and
// its inode (0 when no process holds it any more).
type socketID struct {
	uid   uint32
	inode uint64
}

// peerSocket finds the uid that owns the client end of a loopback TCP
// connection, and that socket's inode. It asks the kernel for exactly
// that socket over NETLINK_SOCK_DIAG (one lookup by address, the cost of
// a few system calls); where sock_diag is unavailable it scans
// /proc/net/tcp and tcp6, whose cost grows with every socket on the host
// (TIME_WAIT included). Out of file descriptors or buffers, it says so
// (ErrNoResources) rather than try the tables, which need them too.
func peerSocket(c net.Conn) (uid uint32, inode uint64, err error) {
	client, server, err := connAddrs(c)
	if err != nil {
		return 0, 0, err
	}
	id, err := sockDiag(client, server)
	if err != nil && !errors.Is(err, errPeerUnknown) && !errors.Is(err, ErrNoResources) {
		id, err = procSocket(client, server)
	}
	return id.uid, id.inode, err
}

// connAddrs returns a TCP connection's remote (client) and local
// (server) addresses.
func connAddrs(c net.Conn) (client, server netip.AddrPort, err error) {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return client, server, fmt.Errorf("not a TCP connection: %v", c.RemoteAddr())
	}
	return remote.AddrPort(), local.AddrPort(), nil
}

// procSocket finds the socket whose local address is client and whose
// remote address is server in /proc/net/tcp or tcp6.
func procSocket(client, server netip.AddrPort) (socketID, error) {
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		id, err := findSocket(table, client, server)
		if !errors.Is(err, errPeerUnknown) {
			return id, err
		}
	}
	return socketID{}, errPeerUnknown
}

// sock_diag (linux/sock_diag.h, linux/inet_diag.h).
const (
	sockDiagByFamily = 20     // SOCK_DIAG_BY_FAMILY
	nlmsgHdrLen      = 16     // struct nlmsghdr
	inetDiagReqLen   = 56     // struct inet_diag_req_v2
	inetDiagUIDAt    = 4 + 60 // idiag_uid in struct inet_diag_msg
	inetDiagInodeAt  = 4 + 64 // idiag_inode
	allTCPStates     = 0xfff
)

// sockDiag asks the kernel for the TCP socket whose local address is
// client and whose remote address is server, and returns it. An
// error other than errPeerUnknown means sock_diag itself failed.
//
// A connection the server sees as IPv4 may have an IPv6 socket at the
// client's end ([::ffff:127.0.0.1] from a dual-stack client): that
// socket is in the kernel's IPv6 table, so an IPv4 lookup that finds
// nothing is tried once more there.
func sockDiag(client, server netip.AddrPort) (socketID, error) {
	if client.Addr().Unmap().Is4() && server.Addr().Unmap().Is4() {
		id, err := sockDiagLookup(syscall.AF_INET, client, server)
		if !errors.Is(err, errPeerUnknown) {
			return id, err
		}
	}
	return sockDiagLookup(syscall.AF_INET6, client, server)
}

// sockDiagLookup asks for the socket in one address family's table.
func sockDiagLookup(family uint8, client, server netip.AddrPort) (socketID, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.NETLINK_INET_DIAG)
	if err != nil {
		return socketID{}, resourceErr("sock_diag", err)
	}
	defer syscall.Close(fd)
	req := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], syscall.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence number
	r := req[nlmsgHdrLen:]
	r[0], r[1] = family, syscall.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], allTCPStates)
	id := r[8:] // struct inet_diag_sockid: ports and addresses in network order
	binary.BigEndian.PutUint16(id[0:], client.Port())
	binary.BigEndian.PutUint16(id[2:], server.Port())
	putDiagAddr(id[4:20], client.Addr(), family)
	putDiagAddr(id[20:36], server.Addr(), family)
	binary.NativeEndian.PutUint32(id[40:], ^uint32(0)) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(id[44:], ^uint32(0))
	if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return socketID{}, resourceErr("sock_diag", err)
	}
	buf := make([]byte, 4096)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil {
		return socketID{}, resourceErr("sock_diag", err)
	}
	if n < nlmsgHdrLen {
		return socketID{}, fmt.Errorf("sock_diag: short answer (%d bytes)", n)
	}
	switch typ := binary.NativeEndian.Uint16(buf[4:]); typ {
	case syscall.NLMSG_ERROR:
		errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(buf[nlmsgHdrLen:])))
		if errno == syscall.ENOENT {
			return socketID{}, errPeerUnknown
		}
		return socketID{}, resourceErr("sock_diag", errno)
	case sockDiagByFamily:
		if n < nlmsgHdrLen+inetDiagInodeAt+4 {
			return socketID{}, fmt.Errorf("sock_diag: short answer (%d bytes)", n)
		}
		// The kernel's lookup falls back to a listening socket when no
		// connection has these addresses: only the exact socket counts.
		msg := buf[nlmsgHdrLen:]
		// A socket without an inode is one no process holds any more
		// (closed: TIME_WAIT, orphaned FIN_WAIT2 …), and the kernel reports
		// uid 0 for it: taken at its word, a client that hung up at once
		// would count as root.
		inode := binary.NativeEndian.Uint32(msg[inetDiagInodeAt:])
		if got := msg[4 : 4+36]; !bytes.Equal(got, id[:36]) || inode == 0 {
			return socketID{}, errPeerUnknown
		}
		return socketID{uid: binary.NativeEndian.Uint32(msg[inetDiagUIDAt:]), inode: uint64(inode)}, nil
	default:
		return socketID{}, fmt.Errorf("sock_diag: unexpected message type %d", typ)
	}
}

// putDiagAddr writes a as inet_diag_sockid does: 4 bytes for AF_INET, 16
// for AF_INET6 (IPv4 as IPv4-mapped).
func putDiagAddr(dst []byte, a netip.Addr, family uint8) {
	if family == syscall.AF_INET {
		b := a.Unmap().As4()
		copy(dst, b[:])
		return
	}
	b := a.As16()
	copy(dst, b[:])
}

// findSocket scans one /proc/net/tcp table for the socket with the
// given local and remote addresses, a line at a time: the table holds a
// line per socket on the host (TIME_WAIT included), megabytes on a busy
// one, and is never read whole.
func findSocket(table string, local, remote netip.AddrPort) (socketID, error) {
	file, err := os.Open(table)
	if errors.Is(err, os.ErrNotExist) {
		return socketID{}, errPeerUnknown
	}
	if err != nil {
		return socketID{}, resourceErr("read "+table, err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		if len(f) < 10 || f[9] == "0" { // no inode: a closed socket, reported as uid 0
			continue
		}
		l, err1 := parseProcAddr(f[1])
		r, err2 := parseProcAddr(f[2])
		if err1 != nil || err2 != nil || !sameAddrPort(l, local) || !sameAddrPort(r, remote) {
			continue
		}
		uid, err := strconv.ParseUint(f[7], 10, 32)
		if err != nil {
			return socketID{}, fmt.Errorf("%s: uid %q: %w", table, f[7], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return socketID{}, fmt.Errorf("%s: inode %q: %w", table, f[9], err)
		}
		return socketID{uid: uint32(uid), inode: inode}, nil
	}
	if err := sc.Err(); err != nil {
		return socketID{}, resourceErr("read "+table, err)
	}
	return socketID{}, errPeerUnknown
}

// parseProcAddr reads "0100007F:1F90" (IPv4) or the 32-hex-digit IPv6
// form: each 32-bit word of the address in host byte order, then the port.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", s)
	}
	for i := 0; i < len(raw); i += 4 { // each word was printed in host order
		binary.BigEndian.PutUint32(raw[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// sameAddrPort compares two addresses, IPv4-mapped IPv6 equal to IPv4.
func sameAddrPort(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}
