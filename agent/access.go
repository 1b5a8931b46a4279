package agent

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
)

// access is a profile's resolved allow list: the allow_* shorthand
// (UIDs, GIDs) and its [[allow]] entries. Root and the agent's own user
// may always use every profile: they can read the agent's secrets
// anyway. Names are resolved when the agent is built (New, Reload), not
// when the configuration is parsed: parsing has no side effects.
// Exported fields: a reload that changes them changes the profile's
// settings (profile.settings), so the new rules apply.
type access struct {
	UIDs    []uint32
	GIDs    []uint32
	Entries []entry
}

// entry is one [[profiles.NAME.allow]] entry, resolved: every selector
// set must match. Index is its place in the configuration (allow[Index]).
type entry struct {
	Index  int
	UID    *uint32
	GID    *uint32
	Unit   string
	Cgroup string
	Exe    string
	SHA256 string
}

// resolveAccess turns allow_users/allow_groups and the entries' user and
// group names into ids. Unknown names are configuration errors: a typo
// must not silently lock users out, or worse, keep a stale numeric id.
func resolveAccess(p *config.ProfileConfig) (access, error) {
	var a access
	var errs []error
	a.UIDs = slices.Clone(p.AllowUIDs)
	a.GIDs = slices.Clone(p.AllowGIDs)
	for _, name := range p.AllowUsers {
		uid, err := lookupUID(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow_users: %w", err))
			continue
		}
		a.UIDs = append(a.UIDs, uid)
	}
	for _, name := range p.AllowGroups {
		gid, err := LookupGID(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow_groups: %w", err))
			continue
		}
		a.GIDs = append(a.GIDs, gid)
	}
	for i, ae := range p.Allow {
		e := entry{Index: i, UID: ae.UID, GID: ae.GID, Unit: ae.Unit, Cgroup: ae.Cgroup, Exe: ae.Exe, SHA256: strings.ToLower(ae.SHA256)}
		if ae.User != "" {
			uid, err := lookupUID(ae.User)
			if err != nil {
				errs = append(errs, fmt.Errorf("allow[%d]: user: %w", i, err))
				continue
			}
			e.UID = &uid
		}
		if ae.Group != "" {
			gid, err := LookupGID(ae.Group)
			if err != nil {
				errs = append(errs, fmt.Errorf("allow[%d]: group: %w", i, err))
				continue
			}
			e.GID = &gid
		}
		a.Entries = append(a.Entries, e)
	}
	return a, errors.Join(errs...)
}

func lookupUID(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("no user %q on this host", name)
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has uid %q, not a number", name, u.Uid)
	}
	return uint32(id), nil
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

// pinsProcesses reports whether some entry reads the caller's process:
// then the doors pin callers' processes as they connect.
func (a access) pinsProcesses() bool {
	return slices.ContainsFunc(a.Entries, func(e entry) bool { return e.Unit != "" || e.Cgroup != "" || e.Exe != "" || e.SHA256 != "" })
}

// allows reports whether caller may use the profile; agentUID is the
// agent's own user.
func (a access) allows(caller ipc.Caller, agentUID uint32) bool {
	rule, _ := a.decide(caller, agentUID)
	return rule != ""
}

// decide says which rule admits caller ("root", "agent user",
// "allow_uids", "allow_groups", "allow[N]"), or "" and why none does —
// for the agent's log and status, never for the caller. The overflow uid
// — what a user namespace shows for every unmapped user — is never the
// agent's own identity, even when the agent runs as nobody: it matches
// only where an allow list names it. The caller's process is read (once)
// only when an entry whose credentials match has a process selector.
func (a access) decide(caller ipc.Caller, agentUID uint32) (rule, why string) {
	switch {
	case caller.UID == 0:
		return "root", ""
	case caller.UID == agentUID && caller.UID != ipc.OverflowUID():
		return "agent user", ""
	case slices.Contains(a.UIDs, caller.UID):
		return "allow_uids", ""
	}
	for _, gid := range a.GIDs {
		if caller.InGroup(gid) {
			return "allow_groups", ""
		}
	}
	var (
		proc    ipc.ProcessIdentity
		procErr error
		read    bool
		whys    []string
	)
	if len(a.UIDs)+len(a.GIDs) > 0 {
		whys = append(whys, fmt.Sprintf("allow_uids/allow_groups: uid %d and its groups are not listed", caller.UID))
	}
	for _, e := range a.Entries {
		miss := e.credentialMiss(caller)
		if miss == "" && e.readsProcess() {
			if !read {
				proc, procErr = identity(caller)
				read = true
			}
			miss = e.processMiss(proc, procErr)
		}
		if miss == "" {
			return fmt.Sprintf("allow[%d]", e.Index), ""
		}
		whys = append(whys, fmt.Sprintf("allow[%d]: %s", e.Index, miss))
	}
	if len(whys) == 0 {
		return "", "the profile admits only root and the agent's user"
	}
	return "", strings.Join(whys, "; ")
}

// identity reads the caller's pinned process.
func identity(caller ipc.Caller) (ipc.ProcessIdentity, error) {
	if caller.Process == nil {
		return ipc.ProcessIdentity{}, errors.New("the caller's process was not pinned when it connected (no profile had a process selector then: reconnect after a reload that added one; or this platform cannot pin)")
	}
	return caller.Process.Identity()
}

func (e entry) readsProcess() bool {
	return e.Unit != "" || e.Cgroup != "" || e.Exe != "" || e.SHA256 != ""
}

// credentialMiss names the entry's uid or group selector that caller
// fails; "" when both match.
func (e entry) credentialMiss(caller ipc.Caller) string {
	if e.UID != nil && *e.UID != caller.UID {
		return fmt.Sprintf("uid %d is not %d", caller.UID, *e.UID)
	}
	if e.GID != nil && !caller.InGroup(*e.GID) {
		return fmt.Sprintf("uid %d is not in group %d", caller.UID, *e.GID)
	}
	return ""
}

// processMiss names the entry's process selector that the caller's
// process fails, the cheap ones first; "" when all match.
func (e entry) processMiss(p ipc.ProcessIdentity, err error) string {
	if err != nil {
		return "process unknown: " + err.Error()
	}
	if e.Unit != "" && p.Unit != e.Unit {
		return fmt.Sprintf("unit %q is not %q (pid %d)", ipc.SafeText(p.Unit), e.Unit, p.PID)
	}
	if e.Cgroup != "" && !underCgroup(p.Cgroup, e.Cgroup) {
		return fmt.Sprintf("cgroup %q is not under %q (pid %d)", ipc.SafeText(p.Cgroup), e.Cgroup, p.PID)
	}
	if (e.Exe != "" || e.SHA256 != "") && p.ExeErr != nil {
		return "exe unknown: " + p.ExeErr.Error()
	}
	if e.Exe != "" && p.Exe != e.Exe {
		return fmt.Sprintf("exe %q is not %q (pid %d)", ipc.SafeText(p.Exe), e.Exe, p.PID)
	}
	if e.Exe != "" && (p.IsExe == nil || !p.IsExe(e.Exe)) {
		return fmt.Sprintf("exe %q is named like the allowed one, but is not the file at %s on the agent's host (another mount namespace, or the file was replaced since the process started) (pid %d)", ipc.SafeText(p.Exe), e.Exe, p.PID)
	}
	if e.SHA256 != "" {
		sum, err := p.SHA256()
		if err != nil {
			return "sha256 unknown: " + err.Error()
		}
		if sum != e.SHA256 {
			return fmt.Sprintf("sha256 of %q is %s, not %s (pid %d)", ipc.SafeText(p.Exe), sum, e.SHA256, p.PID)
		}
	}
	return ""
}

// underCgroup reports whether cgroup is prefix or below it, whole path
// elements only: "/a/b" is under "/a", "/ab" is not.
func underCgroup(cgroup, prefix string) bool {
	rest, ok := strings.CutPrefix(cgroup, prefix)
	return ok && (rest == "" || rest[0] == '/')
}
