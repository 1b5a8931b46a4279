//go:build unix

package secretref

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkConfigOwner refuses, as ssh's StrictModes does, a configuration
// file that someone other than the agent's user or root could change:
// whoever can write it can point token_url at a server of theirs and
// collect the client secret at the next reload.
func checkConfigOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid := os.Geteuid()
	switch {
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("config %s is writable by group or others (mode %04o); whoever can change it can send the client secrets to a server of theirs: chmod go-w %s", path, fi.Mode().Perm(), path)
	case int(st.Uid) != 0 && int(st.Uid) != uid:
		return fmt.Errorf("config %s is owned by uid %d, not by the agent's user (uid %d) or root; whoever owns it can send the client secrets to a server of theirs: chown it to root or uid %d", path, st.Uid, uid, uid)
	}
	return nil
}
