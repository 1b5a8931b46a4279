package ipc

import "net/netip"

// IsLoopbackIP reports whether s is a loopback IP address: 127.0.0.0/8,
// ::1, or an IPv4-mapped loopback address (::ffff:127.0.0.1, as a
// dual-stack client's address reads). Names and zoned addresses are not.
// It is the one such check: the configuration, the IdP client's
// plain-http rule and the TCP doors all use it.
func IsLoopbackIP(s string) bool {
	ip, err := netip.ParseAddr(s)
	return err == nil && ip.Zone() == "" && ip.IsLoopback()
}
