// Package sink writes the token files of file sinks: the current token
// of a profile in a file a script reads with no process at all, replaced
// atomically (a reader sees the old token or the new, never a part) with
// its mode and owner set on the file descriptor before it is visible. It
// knows nothing of profiles or configuration: the engine resolves owner
// and group names and says when to write.
//
// # Trust
//
// Every operation works relative to a descriptor of the sink's directory,
// opened component by component from / with O_NOFOLLOW|O_DIRECTORY and
// checked through that descriptor: each directory on the way is owned by
// the agent's user or root and not writable by group or others unless
// sticky; the sink's own directory may not be writable by group or others
// at all, sticky or not. A link on the way is followed only when root or
// the agent's user made it in such a directory (/var/run → /run, macOS's
// /var → /private/var); the sink's directory itself is never a link. The
// temporary file is created with openat, its mode and owner set with
// fchmod and fchown, and it is put in place with renameat; removal is
// unlinkat. A missing sink directory is made by MakeDir (0750, the agent's
// own) under a checked parent.
//
// The agent knows a file at the sink's path as its own when it is a
// regular file with a single link, owned by the agent's user or the
// sink's configured owner, and not writable by group or others: what
// Write leaves behind. Anything else there (a link, a pipe, a file of
// another user, a hard link to a file elsewhere) is refused, never
// replaced or removed, and the error names it.
package sink

import (
	"fmt"
	"io/fs"
	"os/user"
	"strconv"
)

// File is one token file, its names already resolved.
type File struct {
	// Path is the file, absolute and clean.
	Path string
	// Format is plain, json, header or env (ipc.RenderToken's formats).
	Format string
	// Mode is the file's permission bits.
	Mode fs.FileMode
	// UID and GID are the file's owner and group; -1 leaves one as the
	// agent's.
	UID, GID int
}

// describeUID names a uid for messages: "uid 1000 (alice)".
func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}
