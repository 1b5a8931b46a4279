//go:build !unix

package secretref

import "io/fs"

// fileID has no inodes to offer on this platform: size and mtime alone
// tell versions apart.
func fileID(fs.FileInfo) (dev, ino uint64) { return 0, 0 }
