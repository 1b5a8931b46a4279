package agent

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
)

// access is a profile's resolved allow list. Root and the agent's own
// user may always use every profile: they can read the agent's secrets
// anyway. Names are resolved when the agent is built (New, Reload), not
// when the configuration is parsed: parsing has no side effects.
type access struct {
	UIDs []uint32
	GIDs []uint32
}

// resolveAccess turns allow_users/allow_groups names into ids. Unknown
// names are configuration errors: a typo must not silently lock users out,
// or worse, keep a stale numeric id.
func resolveAccess(p *config.ProfileConfig) (access, error) {
	var a access
	var errs []error
	a.UIDs = slices.Clone(p.AllowUIDs)
	a.GIDs = slices.Clone(p.AllowGIDs)
	for _, name := range p.AllowUsers {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow_users: no user %q on this host", name))
			continue
		}
		id, _ := strconv.ParseUint(u.Uid, 10, 32)
		a.UIDs = append(a.UIDs, uint32(id))
	}
	for _, name := range p.AllowGroups {
		gid, err := LookupGID(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow_groups: %w", err))
			continue
		}
		a.GIDs = append(a.GIDs, gid)
	}
	return a, errors.Join(errs...)
}

// LookupGID resolves a group name on this host.
func LookupGID(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("no group %q on this host", name)
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q has gid %q, not a number", name, g.Gid)
	}
	return uint32(id), nil
}

// allows reports whether caller may use the profile; agentUID is the
// agent's own user. The overflow uid — what a user namespace shows for
// every unmapped user — is never the agent's own identity, even when the
// agent runs as nobody: it matches only where an allow list names it.
func (a access) allows(caller ipc.Caller, agentUID uint32) bool {
	if caller.UID == 0 || caller.UID == agentUID && caller.UID != ipc.OverflowUID() {
		return true
	}
	if slices.Contains(a.UIDs, caller.UID) {
		return true
	}
	for _, gid := range a.GIDs {
		if caller.InGroup(gid) {
			return true
		}
	}
	return false
}
