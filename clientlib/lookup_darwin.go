package clientlib

import (
	"os/user"
	"strconv"
)

// lookupUID asks Directory Services (through os/user): on macOS system
// users such as _tokenagent are not in /etc/passwd.
func lookupUID(name string) (int, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	uid, err := strconv.Atoi(u.Uid)
	return uid, err == nil
}

// lookupGroup asks Directory Services for a group's name.
func lookupGroup(gid uint32) (string, bool) {
	g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10))
	if err != nil {
		return "", false
	}
	return g.Name, true
}
