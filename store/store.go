// Package store keeps access tokens on disk between agent restarts, sealed
// so that the file alone is worth nothing: a bbolt database whose records
// are each encrypted with AES-256-GCM under a key that lives elsewhere.
//
// # Basics
//
// Open a file with a [Key] (and any previous keys still in use), Put a
// record after each fetch, LoadAll at start-up, Delete records of profiles
// that left the configuration. Each record's additional authenticated data
// binds the format version, the key id, the profile name and the profile's
// fingerprint, so a record copied under another profile's name fails
// authentication. The fingerprint is also kept in clear so the caller can
// tell a record written for other settings (stale) from a damaged one.
// The key, its id and the sealing are package seal's, shared with the
// fleet. CreateKeyFile is the one writer of new key files.
//
// # Caveats
//
// The store is a cache: losing it costs one token request per profile.
// Open therefore moves a file that is not a readable database aside
// (<name>.corrupt-<time>) and starts empty; Recovered says when it did.
// It refuses, instead, a file whose records were sealed with a key it was
// not given: that is a configuration mistake, not damage, and starting
// fresh would hide it. A file locked by another process is refused after
// LockTimeout.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tokenagent/tokenagent/store/seal"
)

// formatVersion is the record and schema format this package writes.
const formatVersion = 1

var (
	bucketMeta   = []byte("meta")
	bucketTokens = []byte("tokens")
	bucketCounts = []byte("budgets") // budget counts (Count), in clear: no secret
	keyFormat    = []byte("format")
)

// Errors callers branch on.
var (
	// ErrLocked: another process holds the database.
	ErrLocked = errors.New("store: locked by another process")
	// ErrNewerFormat: the file was written by a newer tokenagent.
	ErrNewerFormat = errors.New("store: written by a newer tokenagent")
	// ErrCorruptRecord: the record is damaged, tampered with or moved.
	ErrCorruptRecord = errors.New("store: record failed authentication")
)

// WrongKeyError says the file holds records sealed with keys the store was
// not given.
type WrongKeyError struct {
	Path string
	// KeyIDs are the unknown key ids found in the file.
	KeyIDs []string
	// Records is how many records they sealed.
	Records int
}

func (e *WrongKeyError) Error() string {
	return fmt.Sprintf("store %s: %d record(s) are sealed with key id %s, which is not the current key or a previous one",
		e.Path, e.Records, strings.Join(e.KeyIDs, ", "))
}

// Key is an AES-256-GCM key with its id (see package seal).
type Key = seal.Key

// KeySize is the key length in bytes.
const KeySize = seal.KeySize

// ParseKey reads a store key in standard base64 (what `openssl rand
// -base64 32` prints); surrounding whitespace and a trailing newline are
// allowed. The error never contains the key.
func ParseKey(text []byte) (*Key, error) { return seal.ParseKey(text, seal.StoreIDs) }

// NewKeyText returns a fresh random key as base64 text with a newline.
func NewKeyText() ([]byte, error) { return seal.NewKeyText() }

// Record is one profile's token.
type Record struct {
	// Profile is the profile name; the record's database key.
	Profile string
	// Fingerprint identifies the profile settings the token was issued
	// for (at most 255 bytes).
	Fingerprint string
	AccessToken string
	TokenType   string
	Scope       string
	ExpiresAt   time.Time
	ObtainedAt  time.Time
}

// Options configure Open. The zero value of every field but Key is a default.
type Options struct {
	// Key seals every write. Required.
	Key *Key
	// PreviousKeys may open existing records; those are re-sealed with
	// Key when the store is opened.
	PreviousKeys []*Key
	// LockTimeout is how long to wait for another process's lock; default 1s.
	LockTimeout time.Duration
	// Now names moved-aside files; default time.Now.
	Now func() time.Time
}

// Store is an open token database. It is safe for concurrent use.
type Store struct {
	db           *bolt.DB
	path         string
	key          *Key
	keys         map[seal.ID]*Key
	recovered    string
	recoverCause error
	resealed     int
	opened       fs.FileInfo // the file as opened, for Detached
}

// Open opens or creates the database at path (mode 0600; its directory is
// created 0700 if missing), verifies it and re-seals records written with a
// previous key.
func Open(path string, opts Options) (*Store, error) {
	if opts.Key == nil {
		return nil, fmt.Errorf("store %s: no key", path)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{path: path, key: opts.Key, keys: map[seal.ID]*Key{opts.Key.RawID(): opts.Key}}
	for _, k := range opts.PreviousKeys {
		if _, dup := s.keys[k.RawID()]; !dup {
			s.keys[k.RawID()] = k
		}
	}
	if err := checkDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("store %s is a %s, not a regular file; the agent opens only its own files, never through a link: remove it, or set store to another path", path, fileKind(fi.Mode()))
	}
	db, err := s.openVerified(opts.LockTimeout)
	var corrupt *corruptError
	if errors.As(err, &corrupt) {
		aside := fmt.Sprintf("%s.corrupt-%s", path, opts.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("store %s is damaged (%v) and could not be moved aside: %w", path, corrupt.err, rerr)
		}
		s.recovered, s.recoverCause = aside, corrupt.err
		db, err = s.openVerified(opts.LockTimeout)
	}
	if err != nil {
		return nil, err
	}
	if s.opened, err = os.Lstat(path); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	s.db = db
	return s, nil
}

func (e *corruptError) Error() string { return e.err.Error() }

// Recovered reports whether Open found the file damaged, where it moved it
// and why. The caller should log it loudly.
func (s *Store) Recovered() (movedTo string, cause error) { return s.recovered, s.recoverCause }

// Resealed is how many records Open re-sealed with the current key.
func (s *Store) Resealed() int { return s.resealed }

// Path is the database file.
func (s *Store) Path() string { return s.path }

// KeyID is the current key's id.
func (s *Store) KeyID() string { return s.key.ID() }

// Put seals and writes r, replacing the profile's previous record.
func (s *Store) Put(r Record) error { return s.Apply([]Record{r}, nil) }

// Delete removes the records of profiles.
func (s *Store) Delete(profiles ...string) error { return s.Apply(nil, profiles) }

// Problem is a record LoadAll could not use.
type Problem struct {
	Profile string
	Err     error
}

// LoadAll returns every record that opens with a known key. Records that
// fail authentication are returned as problems (and should be deleted);
// bytes are copied out of the transaction.
func (s *Store) LoadAll() ([]Record, []Problem, error) {
	var recs []Record
	var problems []Problem
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			name := string(k)
			h, ok := parseHeader(v)
			if !ok {
				problems = append(problems, Problem{name, fmt.Errorf("%w: malformed header", ErrCorruptRecord)})
				return nil
			}
			key := s.keys[h.keyID]
			if key == nil {
				problems = append(problems, Problem{name, fmt.Errorf("%w: unknown key id %s", ErrCorruptRecord, h.keyID)})
				return nil
			}
			rec, err := openRecord(key, name, v)
			if err != nil {
				problems = append(problems, Problem{name, err})
				return nil
			}
			recs = append(recs, *rec)
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store %s: read: %w", s.path, err)
	}
	return recs, problems, nil
}

// Apply writes puts and removes the records of deletes in one
// transaction (one fsync), so that a batch is all there or not at all.
func (s *Store) Apply(puts []Record, deletes []string) error { return s.Write(puts, deletes, nil, nil) }

// Count is one budget's count of IdP requests in one calendar period,
// kept so that a restart goes on counting where the agent stopped (see
// the engine's budgets). Counts are no secret: they are kept in clear.
type Count struct {
	// Scope names the budget ("profile/NAME", "client/ID"); the key.
	Scope string `json:"-"`
	// Period names the period counted ("2026-11-24T12", "2026-11-24", "2026-11").
	Period string `json:"period"`
	// Own, Fleet and Unsent are the agent's requests, the fleet's count
	// as last read, and the agent's requests not yet added to it.
	Own    int64 `json:"own"`
	Fleet  int64 `json:"fleet,omitempty"`
	Unsent int64 `json:"unsent,omitempty"`
	// Warned and Spent: the 80 % and 100 % marks were logged.
	Warned bool `json:"warned,omitempty"`
	Spent  bool `json:"spent,omitempty"`
}

// LoadCounts returns every budget count kept; one that does not read is
// left out (the next write replaces it).
func (s *Store) LoadCounts() ([]Count, error) {
	var out []Count
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCounts)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var c Count
			if json.Unmarshal(v, &c) == nil && c.Own >= 0 && c.Fleet >= 0 && c.Unsent >= 0 {
				c.Scope = string(k)
				out = append(out, c)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store %s: read: %w", s.path, err)
	}
	return out, nil
}

// Write is Apply with budget counts: it also writes counts and removes
// the counts of dropCounts' scopes, all in one transaction.
func (s *Store) Write(puts []Record, deletes []string, counts []Count, dropCounts []string) error {
	sealed := make([][]byte, len(puts))
	for i := range puts {
		var err error
		if sealed[i], err = sealRecord(s.key, &puts[i]); err != nil {
			return err
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		for i := range puts {
			if err := b.Put([]byte(puts[i].Profile), sealed[i]); err != nil {
				return err
			}
		}
		for _, p := range deletes {
			if err := b.Delete([]byte(p)); err != nil {
				return err
			}
		}
		if len(counts)+len(dropCounts) == 0 {
			return nil
		}
		cb, err := tx.CreateBucketIfNotExists(bucketCounts)
		if err != nil {
			return err
		}
		for _, c := range counts {
			v, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if err := cb.Put([]byte(c.Scope), v); err != nil {
				return err
			}
		}
		for _, scope := range dropCounts {
			if err := cb.Delete([]byte(scope)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %s: write: %w", s.path, err)
	}
	return nil
}

// Detached reports whether the path no longer names the open database
// file: it was deleted or replaced. Writes then go to a file nobody will
// read again, and the path no longer holds this process's lock.
func (s *Store) Detached() (bool, error) {
	onDisk, err := os.Lstat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("store %s: %w", s.path, err)
	}
	return !os.SameFile(s.opened, onDisk), nil
}

// ErrInUse is returned by CheckKeys while another process (a running
// agent) holds the database.
var ErrInUse = errors.New("in use by a running agent")

// CheckKeys reports, without changing anything, whether the records at
// path open with opts.Key or opts.PreviousKeys: the *WrongKeyError Open
// would return, nil, or ErrInUse (wrapped) while a running agent holds the
// file. A missing file is fine: Open creates it.
func CheckKeys(path string, opts Options) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("store %s: %w; its keys were checked when it started", path, ErrInUse)
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	defer db.Close()
	known := map[seal.ID]bool{}
	for _, k := range append([]*Key{opts.Key}, opts.PreviousKeys...) {
		if k != nil {
			known[k.RawID()] = true
		}
	}
	unknown := map[string]bool{}
	records, knownRecords := 0, 0
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			if h, ok := parseHeader(v); ok && !known[h.keyID] {
				unknown[h.keyID.String()] = true
				records++
			} else if ok {
				knownRecords++
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	if records > 0 && knownRecords == 0 { // as Open: beside known ones, damage
		return &WrongKeyError{Path: path, KeyIDs: slices.Sorted(maps.Keys(unknown)), Records: records}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
