package main

import (
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strconv"
)

// packageUser is the user the packages (.deb, the launchd job) run the
// service as; check-config judges as it by default. Tests set "" (no
// default), so that what they check does not depend on the host's users.
var packageUser = packageUserFor(runtime.GOOS)

func packageUserFor(goos string) string {
	if goos == "darwin" {
		return "_tokenagent" // macOS names system users with a leading _
	}
	return "tokenagent"
}

// checkedUser is who check-config judges the configuration as: the user
// the service runs as.
type checkedUser struct {
	uid  int
	user *user.User // nil: this process's own user
	name string     // for messages
}

// serviceUser resolves check-config's --as: the named user; without one,
// as root, the package's user where it exists (the service runs as it),
// else this process's user.
func serviceUser(name string) (checkedUser, error) {
	self := checkedUser{uid: os.Geteuid(), name: "uid " + strconv.Itoa(os.Geteuid())}
	if name == "" {
		if os.Geteuid() != 0 || packageUser == "" {
			return self, nil
		}
		if _, err := user.Lookup(packageUser); err != nil {
			return self, nil
		}
		name = packageUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		return checkedUser{}, fmt.Errorf("--as %s: %w; name the user the service runs as", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return checkedUser{}, fmt.Errorf("--as %s: uid %q is not a number", name, u.Uid)
	}
	if uid == os.Geteuid() {
		return checkedUser{uid: uid, name: u.Username}, nil
	}
	return checkedUser{uid: uid, user: u, name: u.Username}, nil
}

// explain says, of a check made as another user, which user it was made as.
func (c checkedUser) explain(err error) error {
	if c.user == nil {
		return err
	}
	return fmt.Errorf("as user %s, whom the service runs as (--as): %w", c.name, err)
}
