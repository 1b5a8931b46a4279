//go:build !unix

package localapi

import "io/fs"

// withUmask: there is no umask here; f runs as it is.
func withUmask(_ fs.FileMode, f func()) { f() }
