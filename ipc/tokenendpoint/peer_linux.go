package tokenendpoint

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
)

// peerUID finds the uid that owns the client end of a loopback TCP
// connection: the socket whose local address is the connection's remote
// one and whose remote address is ours, in /proc/net/tcp or tcp6.
func peerUID(c net.Conn) (uint32, error) {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("not a TCP connection: %v", c.RemoteAddr())
	}
	client, server := remote.AddrPort(), local.AddrPort()
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		uid, err := findSocketOwner(table, client, server)
		if err == nil {
			return uid, nil
		}
		if !errors.Is(err, errPeerUnknown) {
			return 0, err
		}
	}
	return 0, errPeerUnknown
}

// findSocketOwner scans one /proc/net/tcp table for the socket with the
// given local and remote addresses and returns its uid.
func findSocketOwner(table string, local, remote netip.AddrPort) (uint32, error) {
	data, err := os.ReadFile(table)
	if errors.Is(err, os.ErrNotExist) {
		return 0, errPeerUnknown
	}
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		l, err1 := parseProcAddr(f[1])
		r, err2 := parseProcAddr(f[2])
		if err1 != nil || err2 != nil || !sameAddrPort(l, local) || !sameAddrPort(r, remote) {
			continue
		}
		uid, err := strconv.ParseUint(f[7], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%s: uid %q: %w", table, f[7], err)
		}
		return uint32(uid), nil
	}
	return 0, errPeerUnknown
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
