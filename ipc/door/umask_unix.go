//go:build unix

package door

import (
	"io/fs"
	"syscall"
)

// withUmask runs f with the process umask set to mask.
func withUmask(mask fs.FileMode, f func()) {
	old := syscall.Umask(int(mask))
	defer syscall.Umask(old)
	f()
}
