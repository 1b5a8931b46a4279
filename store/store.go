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
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
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

func (e *corruptError) Error() string { return e.err.Error() }

// openVerified opens the file and checks it page by page. A file shorter
// than its meta page's high-water mark is refused before bbolt maps it
// (checkBoltSize: bbolt's check would touch pages past the end of the
// file on its own goroutine, a SIGBUS nothing can recover). bbolt can
// still panic or fault on other damage; both become a corruptError.
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
func (s *Store) Apply(puts []Record, deletes []string) error {
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

// header is the clear-text start of a sealed record.
type header struct {
	version     byte
	keyID       seal.ID
	fingerprint string
	body        []byte // nonce ‖ ciphertext
}

// Record layout: the seal framing, version(1) ‖ key id(8) ‖ clear header
// ‖ nonce(12) ‖ ciphertext+tag, with len(fp)(1) ‖ fp as the clear header.
func parseHeader(v []byte) (header, bool) {
	var h header
	f, err := seal.Split(v)
	if err != nil || f.Version != formatVersion || len(f.Rest) < 1 {
		return h, false
	}
	h.version, h.keyID = f.Version, f.KeyID
	n := int(f.Rest[0])
	if len(f.Rest) < 1+n {
		return h, false
	}
	h.fingerprint = string(f.Rest[1 : 1+n])
	h.body = f.Rest[1+n:]
	return h, true
}

// aad binds a record to the format version, the key id, the profile it is
// stored under and the fingerprint kept in clear.
func aad(version byte, keyID seal.ID, profile, fingerprint string) []byte {
	var b bytes.Buffer
	b.WriteString("tokenagent store\x00")
	b.WriteByte(version)
	b.Write(keyID[:])
	binary.Write(&b, binary.BigEndian, uint16(len(profile)))
	b.WriteString(profile)
	b.WriteByte(byte(len(fingerprint)))
	b.WriteString(fingerprint)
	return b.Bytes()
}

type payload struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type,omitempty"`
	Scope       string `json:"scope,omitempty"`
	ExpiresAt   int64  `json:"expires_at"`
	ObtainedAt  int64  `json:"obtained_at"`
}

func sealRecord(k *Key, r *Record) ([]byte, error) {
	if len(r.Fingerprint) > 255 || len(r.Profile) > 65535 || r.Profile == "" {
		return nil, fmt.Errorf("store: record for %q: profile name or fingerprint too long or empty", r.Profile)
	}
	plain, err := json.Marshal(payload{
		AccessToken: r.AccessToken, TokenType: r.TokenType, Scope: r.Scope,
		ExpiresAt: r.ExpiresAt.UnixNano(), ObtainedAt: r.ObtainedAt.UnixNano(),
	})
	if err != nil {
		return nil, err
	}
	header := append([]byte{byte(len(r.Fingerprint))}, r.Fingerprint...)
	return k.Seal(formatVersion, header, plain, aad(formatVersion, k.RawID(), r.Profile, r.Fingerprint))
}

// openRecord authenticates and decrypts a sealed record stored under
// profile.
func openRecord(k *Key, profile string, sealed []byte) (*Record, error) {
	h, ok := parseHeader(sealed)
	if !ok {
		return nil, fmt.Errorf("%w: malformed header", ErrCorruptRecord)
	}
	plain, err := k.Open(h.body, aad(h.version, h.keyID, profile, h.fingerprint))
	switch {
	case errors.Is(err, seal.ErrMalformed):
		return nil, fmt.Errorf("%w: %d bytes, shorter than nonce and tag", ErrCorruptRecord, len(sealed))
	case err != nil:
		return nil, fmt.Errorf("%w (damaged, tampered with, or copied from another profile)", ErrCorruptRecord)
	}
	var p payload
	if err := json.Unmarshal(plain, &p); err != nil || p.AccessToken == "" {
		return nil, fmt.Errorf("%w: authenticated but unreadable payload", ErrCorruptRecord)
	}
	return &Record{
		Profile: profile, Fingerprint: h.fingerprint,
		AccessToken: p.AccessToken, TokenType: p.TokenType, Scope: p.Scope,
		ExpiresAt: time.Unix(0, p.ExpiresAt), ObtainedAt: time.Unix(0, p.ObtainedAt),
	}, nil
}
