package door

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/tokenagent/tokenagent/ipc"
)

// A browser page can be made to talk to a local socket (through a proxy)
// or to a loopback port (DNS rebinding: a page on rebind.attacker pointed
// at 127.0.0.1 sends "Host: rebind.attacker"). Browsers always send
// Origin or Referer on such requests; curl, Go and OAuth libraries do not.

// SocketGuard says why a request on the Unix socket looks like a
// browser's, or "" when it does not: its Host must be ipc.Host, and it
// may carry neither Origin nor Referer.
func SocketGuard(r *http.Request) string {
	host := r.Host
	if h, _, hasPort := strings.Cut(host, ":"); hasPort {
		host = h
	}
	if host != ipc.Host {
		return fmt.Sprintf("Host must be %q", ipc.Host)
	}
	if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
		return "requests with Origin or Referer are refused"
	}
	return ""
}

// LoopbackGuard says why a request to a TCP door looks like a browser's,
// or "" when it does not: its Host must be an IP address or localhost,
// as a client configured with an address sends, and it may carry neither
// Origin nor Referer.
func LoopbackGuard(r *http.Request) string {
	if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" || !addressHost(r.Host) {
		return "requests with Origin or Referer, or for a Host other than an IP address or localhost, are refused"
	}
	return ""
}

// addressHost reports whether a Host header names an IP address or
// localhost.
func addressHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return host == "localhost" || net.ParseIP(host) != nil
}
