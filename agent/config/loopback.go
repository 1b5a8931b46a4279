package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tokenagent/tokenagent/agent/idp/spec"
)

// CheckLoopbackAddress accepts "IP:PORT" where IP is a loopback address:
// the token endpoint must never be reachable from another host. Names,
// localhost included, are refused: they may resolve elsewhere.
func CheckLoopbackAddress(addr string) error {
	host, port, ok := splitHostPort(addr)
	if !ok {
		return fmt.Errorf("%q: use a loopback address and port such as \"127.0.0.1:8731\" or \"[::1]:8731\"", addr)
	}
	if !spec.IsLoopbackIP(host) {
		return fmt.Errorf("%q: only a loopback IP address (127.0.0.1, ::1) may serve tokens over TCP; names are refused, since they may resolve elsewhere", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// LoopbackListen reports whether a listen address (metrics_listen) binds
// only loopback: a loopback IP, or localhost, which the listener resolves
// on this host. It is the lenient twin of CheckLoopbackAddress, for a
// warning rather than a refusal.
func LoopbackListen(addr string) bool {
	host, _, ok := splitHostPort(addr)
	return ok && (host == "localhost" || spec.IsLoopbackIP(host))
}

// splitHostPort splits "host:port" or "[ipv6]:port" as net.SplitHostPort
// does for these forms, without importing net.
func splitHostPort(addr string) (host, port string, ok bool) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", false
	}
	host, port = addr[:i], addr[i+1:]
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return "", "", false
		}
		host = host[1 : len(host)-1]
	} else if strings.ContainsAny(host, ":[]") {
		return "", "", false
	}
	return host, port, !strings.ContainsAny(port, "[]")
}
