//go:build unix

package secretref

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// readableAs says why u (in groups) could not open path for reading, or
// nil: every directory on the way must let u search it, the file must let
// u read it.
func readableAs(path string, u *user.User, groups []string) error {
	if u.Uid == "0" {
		return nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("does not exist")
		}
		return err
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		if err := allowed(dir, u, groups, 0o1); err != nil {
			return fmt.Errorf("directory %s %v", dir, err)
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}
	return allowed(real, u, groups, 0o4)
}

// allowed checks one permission bit (4 read, 1 search) of path for u, as
// the kernel does: the owner's bits for the owner, the group's for a
// member, else the others'.
func allowed(path string, u *user.User, groups []string, bit fs.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	perm := fi.Mode().Perm()
	uid, gid := strconv.FormatUint(uint64(st.Uid), 10), strconv.FormatUint(uint64(st.Gid), 10)
	var shift uint
	switch {
	case uid == u.Uid:
		shift = 6
	case slices.Contains(groups, gid) || gid == u.Gid:
		shift = 3
	}
	if perm>>shift&bit != 0 {
		return nil
	}
	what := "read"
	if bit == 0o1 {
		what = "search"
	}
	return fmt.Errorf("has mode %04o, owner %s, group %s: user %s may not %s it", perm, nameOfUID(uid), nameOfGID(gid), u.Username, what)
}

func nameOfUID(uid string) string {
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return "uid " + uid
}

func nameOfGID(gid string) string {
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return "gid " + gid
}
