// Package disktest gives tests a real file system they may break: a fresh
// ext4 image on a loop device, mounted in the test's temporary directory,
// that a test can freeze (fsfreeze), fill up, or remount read-only, and
// that is thawed, unmounted and detached when the test ends.
//
// It needs root, loop devices and the util-linux and e2fsprogs tools;
// where the machine has not got them, the test is skipped and says why.
package disktest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// FS is a mounted loop file system.
type FS struct {
	// Dir is where it is mounted.
	Dir string
	t   *testing.T

	mu     sync.Mutex
	frozen bool
}

// Mount makes and mounts a sizeMiB ext4 file system for t, or skips t
// saying why the machine cannot.
func Mount(t *testing.T, sizeMiB int) *FS {
	t.Helper()
	fs, err := TryMount(t, sizeMiB)
	if err != nil {
		t.Skip(err)
	}
	return fs
}

// TryMount is Mount for tests that go on without a file system of their
// own: it says why there is none instead of skipping. The file system is
// unmounted when t (not a subtest) ends.
func TryMount(t *testing.T, sizeMiB int) (*FS, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, errors.New("disktest: needs root to mount a loop file system")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount", "fsfreeze"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("disktest: %s not installed (Debian: e2fsprogs, util-linux)", tool)
		}
	}
	base := t.TempDir()
	img := filepath.Join(base, "fs.img")
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(int64(sizeMiB) << 20)
		f.Close()
	}
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("disktest: mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("disktest: cannot mount a loop file system here (no loop devices?): %v: %s", err, strings.TrimSpace(string(out)))
	}
	fs := &FS{Dir: dir, t: t}
	t.Cleanup(func() {
		fs.Thaw() // a frozen file system would hang the unmount, and every later writer
		exec.Command("umount", "-l", dir).Run()
	})
	// The root directory of a fresh ext4 is 0755 root: trusted, as the
	// agent requires of its directories.
	return fs, nil
}

// mounted fails the test unless fs.Dir is still the loop file system's
// root (another device than its parent's): breaking the disk under it
// would break the machine's own.
func (fs *FS) mounted() {
	fs.t.Helper()
	var dir, parent syscall.Stat_t
	if syscall.Stat(fs.Dir, &dir) != nil || syscall.Stat(filepath.Dir(fs.Dir), &parent) != nil || dir.Dev == parent.Dev {
		fs.t.Fatalf("disktest: %s is no longer a mounted file system", fs.Dir)
	}
}

// Freeze suspends every write to the file system (fsfreeze -f): writers
// block until Thaw, as on a hung disk.
func (fs *FS) Freeze() {
	fs.t.Helper()
	fs.mounted()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if out, err := exec.Command("fsfreeze", "-f", fs.Dir).CombinedOutput(); err != nil {
		fs.t.Fatalf("disktest: fsfreeze -f %s: %v: %s", fs.Dir, err, out)
	}
	fs.frozen = true
}

// Thaw lets writes through again.
func (fs *FS) Thaw() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.frozen {
		exec.Command("fsfreeze", "-u", fs.Dir).Run()
		fs.frozen = false
	}
}

// ReadOnly remounts the file system read-only; ReadWrite undoes it.
func (fs *FS) ReadOnly() { fs.remount("ro") }

// ReadWrite remounts the file system read-write.
func (fs *FS) ReadWrite() { fs.remount("rw") }

func (fs *FS) remount(mode string) {
	fs.t.Helper()
	fs.mounted()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, fs.Dir).CombinedOutput(); err != nil {
		fs.t.Fatalf("disktest: remount %s %s: %v: %s", mode, fs.Dir, err, out)
	}
}
