package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CreateKeyFile writes a fresh random store key at path, readable by its
// owner only (0600), creating the directory (0700) if it is missing. A
// file already at path is left as it is, whatever it holds: the key it may
// be is what opens the records of an existing store. The key is synced to
// disk before CreateKeyFile returns, so that a crash cannot leave a store
// sealed with a key that was never written. The errors name path and say
// what to do; they never contain the key.
func CreateKeyFile(path string) error {
	text, err := NewKeyText()
	if err != nil {
		return fmt.Errorf("store key %s: %w", path, err)
	}
	_, err = CreatePrivateFile(path, text, "store key", fmt.Sprintf("create one with: (umask 077; openssl rand -base64 32 > %s)", path))
	return err
}

// CreatePrivateFile writes data at path as CreateKeyFile writes a store
// key — mode 0600, its directory made 0700 if missing, synced, never over
// an existing file (created false then) — for other keys the agent makes
// for itself (the local CA's). what names the file in errors, and
// remedy says what the operator may do instead.
func CreatePrivateFile(path string, data []byte, what, remedy string) (created bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("%s %s: cannot create its directory (%w); create %s for the agent's user, mode 0700", what, path, PathCause(err), dir)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s %s: cannot create it (%w); %s", what, path, PathCause(err), remedy)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, fmt.Errorf("%s %s: cannot write it (%w); check the disk, or %s", what, path, PathCause(err), remedy)
	}
	// The new name must outlive a crash as the contents do.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return true, nil
}
