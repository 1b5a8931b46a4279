package disktest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// Fill claims every free block with one preallocated file (fallocate,
// so no write-back is involved) and returns a function that removes it
// again.
func (fs *FS) Fill() (free func()) {
	fs.t.Helper()
	fs.mounted()
	path := filepath.Join(fs.Dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fs.t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Statfs_t
	if err := syscall.Statfs(fs.Dir, &st); err != nil {
		fs.t.Fatal(err)
	}
	size := int64(st.Bavail) * st.Bsize
	for size > 0 {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ENOSPC) {
			fs.t.Fatalf("disktest: filling %s: %v", fs.Dir, err)
		}
		size -= st.Bsize * 16 // metadata took some: ask for a little less
	}
	// What metadata left over, a block at a time.
	for {
		end, _ := f.Seek(0, 2)
		if err := syscall.Fallocate(int(f.Fd()), 0, end, st.Bsize); err != nil {
			break
		}
	}
	return func() { os.Remove(path) }
}
