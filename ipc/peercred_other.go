//go:build !linux && !darwin

package ipc

import "errors"

// peerCredentials is unsupported here: every connection is denied.
func peerCredentials(int) (Caller, error) {
	return Caller{}, errors.New("peer credentials are not supported on this platform")
}

func executable(int32) string { return "" }
