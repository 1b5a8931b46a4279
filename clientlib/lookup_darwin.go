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
