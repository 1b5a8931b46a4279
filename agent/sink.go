package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// FileSink is one [[profiles.NAME.files]] table: a file the agent keeps
// the profile's current token in, so that a script reads it with no
// process at all: curl -H "Authorization: Bearer $(< /run/tokenagent/tokens/zeebe)".
type FileSink struct {
	// Path is the file, absolute. Its directory must pass the same
	// ownership checks as the socket's (owned by the agent's user or root,
	// not writable by group or others).
	Path string `toml:"path"`
	// Format is plain (default), json, header or env (an export line).
	Format string `toml:"format"`
	// Mode is the file's permission bits in octal; default "0600".
	Mode string `toml:"mode"`
	// Owner and Group, when set, are the file's user and group (names;
	// changing the owner needs root).
	Owner string `toml:"owner"`
	Group string `toml:"group"`
}

// sink is a FileSink with its names resolved.
type sink struct {
	path, format string
	mode         fs.FileMode
	uid, gid     int // -1: unchanged
}

func (f FileSink) validate() error {
	switch {
	case !filepath.IsAbs(f.Path):
		return fmt.Errorf("path %q: use an absolute path", f.Path)
	case f.Format != "" && f.Format != "plain" && f.Format != "json" && f.Format != "header" && f.Format != "env":
		return fmt.Errorf("format %q: use plain, json, header or env", f.Format)
	}
	if _, err := f.fileMode(); err != nil {
		return err
	}
	return nil
}

func (f FileSink) fileMode() (fs.FileMode, error) {
	if f.Mode == "" {
		return 0o600, nil
	}
	v, err := strconv.ParseUint(f.Mode, 8, 32)
	switch {
	case err != nil || v > 0o777:
		return 0, fmt.Errorf("mode %q is not an octal mode such as \"0640\"", f.Mode)
	case v&0o022 != 0:
		return 0, fmt.Errorf("mode %q lets group or others write the token file; use at most 0644", f.Mode)
	}
	return fs.FileMode(v), nil
}

// resolve looks up the sink's owner and group (at start, not at parse).
func (f FileSink) resolve() (sink, error) {
	s := sink{path: filepath.Clean(f.Path), format: f.Format, uid: -1, gid: -1}
	if s.format == "" {
		s.format = "plain"
	}
	s.mode, _ = f.fileMode()
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

// SinkDirs lists the directories of every file sink, for the daemon's
// ownership checks.
func (c *Config) SinkDirs() []string {
	var dirs []string
	for _, name := range c.ProfileNames() {
		for _, f := range c.Profiles[name].Files {
			if d := filepath.Dir(filepath.Clean(f.Path)); !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
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
