//go:build unix

package sink

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokenagent/tokenagent/ipc"
)

// Write replaces the file with tok, rendered in its format, atomically: a
// temporary file in the same directory gets the content, mode and owner,
// is synced, and is renamed over the old one, so a reader sees the old
// token or the new, never a part. The directory is made if missing (see
// MakeDir); a file at the path that is not the agent's own is refused.
func (s File) Write(tok ipc.TokenResponse, now time.Time) error {
	text, err := ipc.RenderToken(s.Format, "ACCESS_TOKEN", tok, now)
	if err != nil {
		return err
	}
	return s.Put([]byte(text))
}

// Put replaces the file with data as Write does with a token, with the
// same checks: for the other files the agent publishes for its callers
// (its local CA's certificate and trust stores). Format is not used.
func (s File) Put(data []byte) error {
	d, err := openDir(filepath.Dir(s.Path), true)
	if err != nil {
		return err
	}
	defer d.close()
	name := filepath.Base(s.Path)
	if err := s.checkExisting(d, name); err != nil {
		return err
	}
	tmp, f, err := createTemp(d, name)
	if err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			unix.Unlinkat(d.fd, tmp, 0)
		}
	}()
	if err := f.Chmod(s.Mode); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	if s.UID >= 0 || s.GID >= 0 {
		if err := f.Chown(s.UID, s.GID); err != nil {
			return fmt.Errorf("file sink %s: chown: %w", s.Path, err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		return fmt.Errorf("file sink %s: rename: %w", s.Path, err)
	}
	ok = true
	unix.Fsync(d.fd) // the rename survives a crash where the file system can say so
	return nil
}

// createTemp makes a new, empty, private file beside name in d.
func createTemp(d dir, name string) (string, *os.File, error) {
	for range 100 {
		var b [6]byte
		rand.Read(b[:])
		tmp := "." + name + "." + hex.EncodeToString(b[:])
		fd, err := unix.Openat(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return tmp, os.NewFile(uintptr(fd), filepath.Join(d.path, tmp)), nil
	}
	return "", nil, errors.New("cannot find a free temporary name")
}

// Remove deletes the file (its profile or the sink was removed), through
// its directory's descriptor and only when it is the agent's own; a file
// already gone is not an error.
func (s File) Remove() error {
	d, err := openDir(filepath.Dir(s.Path), false)
	if err != nil || d.fd < 0 {
		return err // a missing directory holds nothing to remove
	}
	defer d.close()
	name := filepath.Base(s.Path)
	if err := s.checkExisting(d, name); err != nil {
		return err
	}
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	return nil
}

// Check applies Write's checks without writing: the directory (a missing
// one passes when MakeDir could make it) and any file at the path.
func (s File) Check() error {
	d, err := openDir(filepath.Dir(s.Path), false)
	if err != nil || d.fd < 0 {
		return err
	}
	defer d.close()
	return s.checkExisting(d, filepath.Base(s.Path))
}

// MakeDir makes the sink directory dir if it is missing (0750, the
// agent's own, each missing component under a checked parent) and checks
// it and every directory above it.
func MakeDir(dir string) error {
	d, err := openDir(dir, true)
	if err != nil {
		return err
	}
	d.close()
	return nil
}

// CheckDir checks the sink directory dir and every directory above it as
// MakeDir would, making nothing: a missing one passes when its nearest
// existing parent does.
func CheckDir(dir string) error {
	d, err := openDir(dir, false)
	if err == nil && d.fd >= 0 {
		d.close()
	}
	return err
}

// checkExisting refuses a file at name in d that the agent did not
// write (see the package's Trust section); nothing there passes.
func (s File) checkExisting(d dir, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("file sink %s: %w", s.Path, err)
	}
	euid := os.Geteuid()
	mode := uint32(st.Mode)
	owner := int(st.Uid)
	var why string
	switch {
	case mode&unix.S_IFMT == unix.S_IFLNK:
		why = "is a symbolic link"
	case mode&unix.S_IFMT == unix.S_IFIFO:
		why = "is a named pipe"
	case mode&unix.S_IFMT == unix.S_IFDIR:
		why = "is a directory"
	case mode&unix.S_IFMT != unix.S_IFREG:
		why = "is not a regular file"
	case owner != euid && (s.UID < 0 || owner != s.UID):
		why = "is a file the agent did not write"
	case uint64(st.Nlink) != 1:
		why = fmt.Sprintf("has %d links (a hard link to a file elsewhere?)", st.Nlink)
	case mode&0o022 != 0:
		why = "is writable by group or others"
	default:
		return nil
	}
	owners := describeUID(euid)
	if s.UID >= 0 && s.UID != euid {
		owners += " or " + describeUID(s.UID)
	}
	return fmt.Errorf("file sink %s %s (owner %s, mode %04o); the agent replaces or removes only the token files it wrote "+
		"(a regular file of %s with one link, not writable by group or others). Find out who put it there, then remove it (rm %s) and reload",
		s.Path, why, describeUID(owner), mode&0o7777, owners, s.Path)
}
