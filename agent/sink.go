package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
)

// sink is a config.FileSink with its names resolved.
type sink struct {
	path, format string
	mode         fs.FileMode
	uid, gid     int // -1: unchanged
}

// resolveSink looks up the sink's owner and group (at start, not at parse).
func resolveSink(f config.FileSink) (sink, error) {
	s := sink{path: filepath.Clean(f.Path), format: f.Format, uid: -1, gid: -1}
	if s.format == "" {
		s.format = "plain"
	}
	s.mode, _ = f.FileMode()
	if f.Owner != "" {
		u, err := user.Lookup(f.Owner)
		if err != nil {
			return s, fmt.Errorf("owner: no user %q on this host", f.Owner)
		}
		s.uid, _ = strconv.Atoi(u.Uid)
	}
	if f.Group != "" {
		gid, err := LookupGID(f.Group)
		if err != nil {
			return s, fmt.Errorf("group: %w", err)
		}
		s.gid = int(gid)
	}
	if fi, err := os.Lstat(s.path); err == nil && !fi.Mode().IsRegular() {
		return s, fmt.Errorf("%s exists and is not a regular file (a link?); the agent replaces only its own token files: remove it", s.path)
	}
	return s, nil
}

// write replaces the sink's file with tok atomically: a temporary file in
// the same directory gets the content, mode and owner, is synced, and is
// renamed over the old one, so a reader sees the old token or the new,
// never a part. A link planted at the path is replaced, not followed.
func (s sink) write(tok Token, now time.Time) error {
	text, err := ipc.RenderToken(s.format, "ACCESS_TOKEN", ipc.TokenResponse{
		AccessToken: tok.AccessToken, TokenType: tok.TokenType, Scope: tok.Scope, ExpiresAt: tok.ExpiresAt.UTC()}, now)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".*")
	if err != nil {
		return fmt.Errorf("file sink %s: %w", s.path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(s.mode); err != nil {
		return fmt.Errorf("file sink %s: %w", s.path, err)
	}
	if s.uid >= 0 || s.gid >= 0 {
		if err := tmp.Chown(s.uid, s.gid); err != nil {
			return fmt.Errorf("file sink %s: chown: %w", s.path, err)
		}
	}
	if _, err := tmp.WriteString(text); err != nil {
		return fmt.Errorf("file sink %s: %w", s.path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("file sink %s: %w", s.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("file sink %s: %w", s.path, err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("file sink %s: %w", s.path, err)
	}
	ok = true
	return nil
}

// remove deletes the sink's file (its profile or the sink was removed).
func (s sink) remove() error {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file sink %s: %w", s.path, err)
	}
	return nil
}
