package door

import (
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"

	"github.com/tokenagent/tokenagent/ipc"
)

// errPeerUnknown: the connection's client end is not a socket of this
// network namespace (or it closed), so the kernel cannot say who owns it.
var errPeerUnknown = errors.New("the client end of the connection is not in this network namespace")

// ListenLoopback opens a TCP listener at addr, which must be a loopback
// IP address and port, with the socket's connection caps; each caller is
// identified by TCPCaller. what names the setting in errors
// ("token_endpoint").
func ListenLoopback(what, addr string, lc ListenConfig) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !ipc.IsLoopbackIP(host) {
		return nil, fmt.Errorf("%s %q: only a loopback IP address may serve tokens over TCP", what, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, addr, err)
	}
	return Limit(ln, lc, TCPCaller), nil
}

// TCPCaller identifies the client of a loopback TCP connection: its uid
// is the owner of the client's socket as the kernel says (IPv4, IPv6 and
// IPv4-mapped IPv6 alike), its groups come from the user database (the
// kernel's TCP tables hold none). A client in another network namespace,
// or on a platform where the kernel does not say, is unknown.
func TCPCaller(c net.Conn) (ipc.Caller, error) {
	uid, err := peerUID(c)
	if err != nil {
		return ipc.Caller{}, err
	}
	caller := ipc.Caller{UID: uid, GID: ^uint32(0)}
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		if gid, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			caller.GID = uint32(gid)
		}
		if gids, err := u.GroupIds(); err == nil {
			for _, g := range gids {
				if id, err := strconv.ParseUint(g, 10, 32); err == nil {
					caller.Groups = append(caller.Groups, uint32(id))
				}
			}
		}
	}
	return caller, nil
}
