//go:build !unix

package door

import "io/fs"

// withUmask: there is no umask here; f runs as it is.
func withUmask(_ fs.FileMode, f func()) { f() }
