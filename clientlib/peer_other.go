//go:build !linux && !darwin

package clientlib

import "net"

// peerUID: this platform does not say who serves a socket.
func peerUID(net.Conn) (int, bool, error) { return 0, false, nil }
