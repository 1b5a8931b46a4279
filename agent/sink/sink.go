// Package sink writes the token files of file sinks: the current token
// of a profile in a file a script reads with no process at all, replaced
// atomically (a reader sees the old token or the new, never a part) with
// its mode and owner set on the file descriptor before it is visible. It
// knows nothing of profiles or configuration: the engine resolves owner
// and group names and says when to write.
package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
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

// Write replaces the file with tok, rendered in its format, atomically: a temporary file in
// the same directory gets the content, mode and owner, is synced, and is
// renamed over the old one, so a reader sees the old token or the new,
// never a part. A link planted at the path is replaced, not followed.
func (s File) Write(tok ipc.TokenResponse, now time.Time) error {
	text, err := ipc.RenderToken(s.Format, "ACCESS_TOKEN", tok, now)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.Path), "."+filepath.Base(s.Path)+".*")
	if err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(s.Mode); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	if s.UID >= 0 || s.GID >= 0 {
		if err := tmp.Chown(s.UID, s.GID); err != nil {
			return fmt.Errorf("file sink %s: chown: %w", s.Path, err)
		}
	}
	if _, err := tmp.WriteString(text); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	if err := os.Rename(tmp.Name(), s.Path); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	ok = true
	return nil
}

// Remove deletes the file (its profile or the sink was removed).
func (s File) Remove() error {
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	return nil
}
