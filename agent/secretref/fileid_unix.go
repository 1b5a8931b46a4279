//go:build unix

package secretref

import (
	"io/fs"
	"syscall"
)

// fileID is the device and inode of fi: a file replaced by rename or by a
// symlink swap has another inode, however its size and mtime compare.
func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
