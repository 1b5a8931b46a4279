//go:build unix && !linux

package sink

import "golang.org/x/sys/unix"

// pathOnly: without O_PATH, a directory on the way is opened to read.
const pathOnly = unix.O_RDONLY
