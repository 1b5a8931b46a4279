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
	// Process is the caller's process as the door pinned it when the
	// connection was accepted (nil where the door pins none: root's and
	// the agent's own connections, platforms without pidfds). Process
	// selectors (exe, sha256, unit, cgroup) match only through it.
	Process Process
}

// Process is a caller's process, pinned (by pidfd) when its connection
// was accepted, so that neither a reused pid nor an exec can lend the
// connection another program's identity.
type Process interface {
	// Identity reads the pinned process as it is now. It fails, saying
	// why, when the process could not be pinned, has exited, or runs
	// another program than the one that connected.
	Identity() (ProcessIdentity, error)
}

// ProcessIdentity is what the selectors of a profile's allow entries
// see of a caller's process.
type ProcessIdentity struct {
	// PID is the process's id in the agent's pid namespace.
	PID int32
	// Exe is the executable's path as the kernel names it; "" when the
	// agent may not read it (ExeErr says why: another user's process, and
	// an agent neither root nor with CAP_SYS_PTRACE).
	Exe    string
	ExeErr error
	// IsExe reports whether the file at path, as the agent sees it, is
	// the very file the process runs (same device and inode): the path
	// the kernel names is the one in the caller's mount namespace, where
	// anything may be mounted over it.
	IsExe func(path string) bool
	// Cgroup is the process's cgroup v2 path, as the agent's cgroup
	// namespace sees it ("/system.slice/job-a.service").
	Cgroup string
	// Unit is the systemd unit the cgroup belongs to ("job-a.service");
	// "" outside one.
	Unit string
	// SHA256 returns the hex SHA-256 of the executable, computed once per
	// version of the file and only when a selector asks for it.
	SHA256 func() (string, error)
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

// UnitOf is the systemd unit a cgroup path belongs to, as systemd itself
// names it (cg_path_get_unit): the first path element past the slices,
// when it is a unit's name. "/system.slice/job-a.service" is
// "job-a.service"; "/user.slice/user-1000.slice/user@1000.service/app.slice/x.service"
// is "user@1000.service" (a user's own units are told apart by cgroup).
// "" when the path is in no unit.
func UnitOf(cgroup string) string {
	for elem := range strings.SplitSeq(strings.Trim(cgroup, "/"), "/") {
		if strings.HasSuffix(elem, ".slice") {
			continue
		}
		if UnitType(elem) != "" {
			return elem
		}
		return ""
	}
	return ""
}

// UnitType is a systemd unit name's type ("service", "scope", …), or ""
// when name is not the name of a unit a process can run in.
func UnitType(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return ""
	}
	switch t := name[i+1:]; t {
	case "service", "scope", "socket", "mount", "swap":
		return t
	}
	return ""
}
