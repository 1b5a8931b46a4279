//go:build unix

package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// checkTrustedDir refuses a directory that another user could change: the
// directory the agent keeps its socket, store or keys in (what, e.g.
// "socket directory") must be owned by the agent's user or root and not
// writable by group or others unless sticky; so must every directory
// above it, and links are followed only to such places. A directory that
// does not exist yet is judged by the nearest one that does: the agent
// creates the rest itself.
func checkTrustedDir(what, dir string, uid int) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	existing := dir
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %s: %w", what, existing, err)
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, existing, err)
	}
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil // no owner to check on this platform
		}
		owner := int(st.Uid)
		shared := fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0
		if (owner != 0 && owner != uid) || shared {
			why := fmt.Sprintf("is owned by %s", describeUID(owner))
			if shared {
				why = fmt.Sprintf("is writable by group or others (mode %04o, owner %s)", fi.Mode().Perm(), describeUID(owner))
			}
			at := p
			if p != real {
				at = fmt.Sprintf("%s, which holds %s,", p, dir)
			}
			return fmt.Errorf("%s %s %s; another user could replace what the agent keeps there. "+
				"Use a directory owned by %s or root that group and others cannot write (chmod go-w), or choose another path%s",
				what, at, why, describeUID(uid), homebrewHint(p, uid))
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// describeUID names a uid for messages: "uid 1000 (alice)".
func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// homebrewHint says what to do when the refused directory p is in
// Homebrew's prefix, which Homebrew makes the installing user's
// (/usr/local on Intel Macs, /opt/homebrew on Apple silicon, also
// /home/linuxbrew): an agent run as root (uid 0) cannot trust it.
func homebrewHint(p string, uid int) string {
	for _, prefix := range []string{"/usr/local", "/opt/homebrew", "/home/linuxbrew/.linuxbrew"} {
		if p != prefix && !strings.HasPrefix(p, prefix+"/") {
			continue
		}
		if uid != 0 {
			return ""
		}
		return fmt.Sprintf(". %s is in Homebrew's prefix %s, which Homebrew makes the installing user's: "+
			"a system agent (run as root) keeps its configuration in /etc/tokenagent and its store in /var/db/tokenagent (macOS) "+
			"or /var/lib/tokenagent, the defaults; or run the agent as that user instead (a launchd agent: tokenagentd service install --user)",
			p, prefix)
	}
	return ""
}
