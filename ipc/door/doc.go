// Package door is what every door of the agent shares, written once: the
// capped listener with per-uid connection limits (Listen for the Unix
// socket, Limit for any other listener), the caller's identity per
// connection as the kernel tells it (SO_PEERCRED and groups for Unix
// sockets; the owner of the client's socket for loopback TCP, both
// address families, IPv4-mapped IPv6 included), ConnContext and
// CallerFrom, the browser guard, request events, JSON answers and one
// http.Server with its timeouts.
//
// A door (ipc/localapi, ipc/tokenendpoint, …) only parses its protocol
// and asks the engine one question; who is asking, how many connections
// they may hold and what a browser may not do are decided here.
package door
