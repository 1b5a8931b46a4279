//go:build !linux

package disktest

// Fill is Linux-only (fallocate); elsewhere Mount has already skipped.
func (fs *FS) Fill() (free func()) {
	fs.t.Skip("disktest: Fill needs Linux")
	return func() {}
}
