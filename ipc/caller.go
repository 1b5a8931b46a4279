package ipc

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Caller is who is on the other end of a connection, as the kernel says.
// The engine authorises by it; nothing else about a request is trusted.
type Caller struct {
	UID uint32
	GID uint32
	// Groups are the supplementary groups, when the platform reports them.
	Groups []uint32
	// PID is the peer's process id when known (0 otherwise), and Exe its
	// executable when it could be read at accept. Both are for logs only:
	// pids are reused, so nothing is authorised by them.
	PID int32
	Exe string
}

// InGroup reports whether gid is the caller's primary or a supplementary group.
func (c Caller) InGroup(gid uint32) bool { return c.GID == gid || slices.Contains(c.Groups, gid) }

func (c Caller) String() string { return fmt.Sprintf("uid=%d gid=%d pid=%d", c.UID, c.GID, c.PID) }

// OverflowUID is the kernel's overflow uid: what a user namespace shows
// for every unmapped user (65534 unless /proc/sys/kernel/overflowuid says
// otherwise). A peer appearing as it could be anyone, so it is never the
// agent's own identity and never a trusted server unless named. Read once,
// on first use.
var OverflowUID = sync.OnceValue(func() uint32 {
	if data, err := os.ReadFile("/proc/sys/kernel/overflowuid"); err == nil {
		if id, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32); err == nil {
			return uint32(id)
		}
	}
	return 65534
})

// ClientMatch is what an OAuth client asking a token door identifies
// itself and its token by: a client_id (a profile's name, or its IdP
// client id), the secret it sent (only ever compared with a profile's
// local_secret), and the scope, audience and resource it wants.
type ClientMatch struct {
	ClientID string
	Secret   string
	Scopes   []string
	Audience string
	Resource []string
}

// ResourceMatch is what a cloud SDK asking an identity door (Azure's
// managed identity protocols) names: the resource it wants a token for
// and, for a user-assigned identity, which one — a client id (a
// profile's name or its IdP client id) or a resource id (whose last path
// segment is a profile's name).
type ResourceMatch struct {
	Resource   string
	ClientID   string
	ResourceID string
}
