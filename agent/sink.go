package agent

import (
	"cmp"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	filesink "github.com/tokenagent/tokenagent/agent/sink"
	"github.com/tokenagent/tokenagent/ipc"
)

// sink is a config.FileSink with its names resolved: the file the
// package sink writes, and its path, which reloads compare.
type sink struct {
	path string
	file filesink.File
}

// resolveSink looks up the sink's owner and group (at start, not at parse).
func resolveSink(f config.FileSink) (sink, error) {
	s := sink{path: filepath.Clean(f.Path)}
	s.file = filesink.File{Path: s.path, Format: cmp.Or(f.Format, "plain"), UID: -1, GID: -1}
	s.file.Mode, _ = f.FileMode()
	if f.Owner != "" {
		u, err := user.Lookup(f.Owner)
		if err != nil {
			return s, fmt.Errorf("owner: no user %q on this host", f.Owner)
		}
		s.file.UID, _ = strconv.Atoi(u.Uid)
	}
	if f.Group != "" {
		gid, err := LookupGID(f.Group)
		if err != nil {
			return s, fmt.Errorf("group: %w", err)
		}
		s.file.GID = int(gid)
	}
	if fi, err := os.Lstat(s.path); err == nil && !fi.Mode().IsRegular() {
		return s, fmt.Errorf("%s exists and is not a regular file (a link?); the agent replaces only its own token files: remove it", s.path)
	}
	return s, nil
}

// write puts tok into the sink's file.
func (s sink) write(tok Token, now time.Time) error {
	return s.file.Write(ipc.TokenResponse{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Scope: tok.Scope, ExpiresAt: tok.ExpiresAt.UTC()}, now)
}

// remove deletes the sink's file (its profile or the sink was removed).
func (s sink) remove() error { return s.file.Remove() }
