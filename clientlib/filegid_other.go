//go:build !unix

package clientlib

import "io/fs"

// fileGID: files have no owning group here.
func fileGID(fs.FileInfo) (uint32, bool) { return 0, false }
