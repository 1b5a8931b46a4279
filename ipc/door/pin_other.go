//go:build !linux

package door

import (
	"errors"

	"github.com/tokenagent/tokenagent/ipc"
)

// errNoPin: only Linux has pidfds, which pin a process race-free.
var errNoPin = errors.New("process selectors (exe, sha256, unit, cgroup) need Linux: this platform cannot pin a caller's process")

type pinned struct{}

func (*pinned) Identity() (ipc.ProcessIdentity, error) { return ipc.ProcessIdentity{}, errNoPin }
func (*pinned) close()                                 {}

func pinPeer(int, int32) (*pinned, error)   { return nil, errNoPin }
func pinPID(int32, uint64) (*pinned, error) { return nil, errNoPin }
