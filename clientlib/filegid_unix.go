//go:build unix

package clientlib

import (
	"io/fs"
	"syscall"
)

// fileGID is the group that owns a file.
func fileGID(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Gid, true
}
