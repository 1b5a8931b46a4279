// Package tokenendpoint is the agent's loopback OAuth 2.0 token endpoint
// (RFC 6749 §4.4, with RFC 8414 metadata), for clients that take a token
// URL from their configuration and cannot be changed to use the socket.
// The caller is identified by the kernel: the uid that owns the client end
// of the TCP connection (door.TCPCaller).
package tokenendpoint
