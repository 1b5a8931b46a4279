package store

// Opening the file: the directory and file checks, the size check and
// bbolt's own check with faults recovered, moving a damaged file aside, and
// preparing the records for the current key.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// checkDir creates dir 0700 if needed and proves it writable by creating a
// file in it: permission bits alone say nothing for root or a read-only
// mount.
func checkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store directory %s: %w; create it writable for the agent, or set store = \"memory\" to run without a disk cache", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("store directory %s is not writable: %w; fix its permissions or mount, or set store = \"memory\" to run without a disk cache", dir, PathCause(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// PathCause is the cause of a file-system error without the operation
// and path, for messages that name the file themselves ("store key
// /etc/x: permission denied", not "…: open /etc/x: permission denied").
func PathCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// corruptError marks a file that is not a usable database.
type corruptError struct{ err error }

// openVerified opens the file and checks it page by page. bbolt's
// Tx.Check runs on a goroutine of its own, where SetPanicOnFault and
// recover cannot reach: a fault there (SIGBUS past the end of the file,
// SIGSEGV past the map) or a cycle it recurses into kills or hangs the
// agent at every start. What protects that goroutine is checkBoltSize,
// before bbolt maps the file: the size against the newest valid meta's
// high-water mark, then the freelist and the tree walked over a copy in
// memory, every page number it will follow inside the file and reached
// once. bbolt's own reads at Open and in prepare run on the goroutine
// below, where a panic or a fault on other damage becomes a corruptError.
func (s *Store) openVerified(lockTimeout time.Duration) (db *bolt.DB, err error) {
	if fi, statErr := os.Stat(s.path); statErr == nil && fi.Size() == 0 {
		return nil, &corruptError{errors.New("file is empty")}
	}
	if cerr := checkBoltSize(s.path); cerr != nil {
		return nil, &corruptError{cerr}
	}
	// On a goroutine of its own: a memory fault while bbolt reads the
	// map on it becomes a panic (SetPanicOnFault), recovered as damage,
	// and the caller's goroutine keeps its own setting.
	type result struct {
		db  *bolt.DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		debug.SetPanicOnFault(true)
		var r result
		var opened *bolt.DB // closed if a later step panics
		defer func() {
			if p := recover(); p != nil {
				if opened != nil {
					opened.Close()
				}
				r = result{nil, &corruptError{fmt.Errorf("database unreadable: %v", p)}}
			}
			done <- r
		}()
		r.db, r.err = s.openChecked(lockTimeout, &opened)
	}()
	res := <-done
	return res.db, res.err
}

// openChecked is openVerified's work, run where faults are panics.
func (s *Store) openChecked(lockTimeout time.Duration, opened **bolt.DB) (*bolt.DB, error) {
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: lockTimeout})
	*opened = db
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s is held by another process (is another tokenagent running?); stop it or give this agent its own store", ErrLocked, s.path)
	case err != nil && os.IsPermission(err):
		return nil, fmt.Errorf("store %s: %w", s.path, PathCause(err))
	case err != nil:
		return nil, &corruptError{err}
	}
	os.Chmod(s.path, 0o600) // an old file may have looser bits
	if err := s.prepare(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// prepare creates the buckets, checks the format and the keys, and
// re-seals records written with previous keys.
func (s *Store) prepare(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		// Drain the whole channel: Check reads pages in a goroutine that
		// must finish before the transaction ends.
		var checkErr error
		for err := range tx.Check() {
			if checkErr == nil {
				checkErr = err
			}
		}
		if checkErr != nil {
			return &corruptError{fmt.Errorf("consistency check: %w", checkErr)}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("store %s: %w", s.path, err)
		}
		if v := meta.Get(keyFormat); v != nil {
			if string(v) != fmt.Sprint(formatVersion) {
				return fmt.Errorf("%w: %s has format %q, this agent reads %d; upgrade tokenagent or delete the file", ErrNewerFormat, s.path, v, formatVersion)
			}
		} else if err := meta.Put(keyFormat, []byte(fmt.Sprint(formatVersion))); err != nil {
			return fmt.Errorf("store %s: %w", s.path, err)
		}
		tokens, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return fmt.Errorf("store %s: %w", s.path, err)
		}
		unknown := map[string]bool{}
		var unknownRecords, knownRecords int
		type reseal struct {
			name []byte
			rec  *Record
		}
		var reseals []reseal
		err = tokens.ForEach(func(k, v []byte) error {
			h, ok := parseHeader(v)
			if !ok {
				return nil // LoadAll reports and drops it
			}
			key := s.keys[h.keyID]
			if key == nil {
				unknown[h.keyID.String()] = true
				unknownRecords++
				return nil
			}
			knownRecords++
			if key != s.key {
				if rec, err := openRecord(key, string(k), v); err == nil {
					reseals = append(reseals, reseal{bytes.Clone(k), rec})
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Records under an unknown key beside records under a known one
		// are damage (a flipped key id), not a wrong key: LoadAll reports
		// them and the agent drops them.
		if len(unknown) > 0 && knownRecords == 0 {
			ids := make([]string, 0, len(unknown))
			for id := range unknown {
				ids = append(ids, id)
			}
			return &WrongKeyError{Path: s.path, KeyIDs: ids, Records: unknownRecords}
		}
		for _, r := range reseals {
			sealed, err := sealRecord(s.key, r.rec)
			if err != nil {
				return err
			}
			if err := tokens.Put(r.name, sealed); err != nil {
				return fmt.Errorf("store %s: %w", s.path, err)
			}
		}
		s.resealed = len(reseals)
		return nil
	})
}
