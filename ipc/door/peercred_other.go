//go:build !linux && !darwin

package door

import (
	"errors"

	"github.com/tokenagent/tokenagent/ipc"
)

// peerCredentials is unsupported here: every connection is denied.
func peerCredentials(int) (ipc.Caller, error) {
	return ipc.Caller{}, errors.New("peer credentials are not supported on this platform")
}

func executable(int32) string { return "" }
