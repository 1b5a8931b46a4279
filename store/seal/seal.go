// Package seal owns the AES-256-GCM key that the store (token records on
// disk) and the fleet (token records in etcd) seal with: parsing its
// base64 text, its public key id, the framing of a sealed value
//
//	version(1) ‖ key id(8) ‖ clear header (the caller's, may be empty) ‖ nonce(12) ‖ ciphertext+tag
//
// and the binding of each value to its additional authenticated data
// (AAD), which names what the value is for so that it does not open
// anywhere else.
//
// # Caveats
//
// The store and the fleet published their formats before they shared this
// package, and records in both places must keep opening, so two things
// stay theirs: how a key id is derived (an [IDLabel] each), and the bytes
// of their AAD. A caller that keeps clear-text fields in the header binds
// them by putting them in its AAD.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeySize is the key length in bytes.
const KeySize = 32

// Overhead is how many bytes sealing adds to a plaintext beyond the
// framing's version, key id and clear header: the nonce and the tag.
const Overhead = nonceSize + tagSize

const (
	nonceSize = 12
	tagSize   = 16
	// headerSize is version ‖ key id.
	headerSize = 1 + len(ID{})
)

// Errors callers branch on.
var (
	// ErrMalformed: the value is too short to be sealed.
	ErrMalformed = errors.New("malformed")
	// ErrTampered: the value does not authenticate under its AAD (altered,
	// truncated, or moved to where another AAD applies).
	ErrTampered = errors.New("does not authenticate")
)

// ID is a key's public identifier, the first 8 bytes of a SHA-256 over
// the key; safe to log and to store beside what the key sealed.
type ID [8]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IDLabel prefixes the key bytes when a key's id is derived:
// id = SHA-256(label ‖ key)[:8]. Ids are written in store files and pinned
// in etcd, so each user keeps the label it first published them under.
type IDLabel string

const (
	// StoreIDs are the ids of store keys.
	StoreIDs IDLabel = "tokenagent store key id\x00"
	// FleetIDs are the ids of fleet seal keys: the bare key's hash, as the
	// fleet first pinned them.
	FleetIDs IDLabel = ""
)

// Key is an AES-256-GCM key with its id.
type Key struct {
	id   ID
	aead cipher.AEAD
	raw  [KeySize]byte // for Derive only
}

// ParseKey reads a key in standard base64 (what `openssl rand -base64 32`
// prints); surrounding whitespace and a trailing newline are allowed. Its
// id is derived under label. The error never contains the key.
func ParseKey(text []byte, label IDLabel) (*Key, error) {
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(text)))
	if err != nil {
		return nil, errors.New("not standard base64 (create one with: openssl rand -base64 32)")
	}
	if len(raw) != KeySize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d (create one with: openssl rand -base64 32)", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &Key{aead: aead}
	copy(k.raw[:], raw)
	sum := sha256.Sum256(append([]byte(label), raw...))
	copy(k.id[:], sum[:])
	return k, nil
}

// NewKeyText returns a fresh random key as base64 text with a newline.
func NewKeyText() ([]byte, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	return []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), nil
}

// ID is the key's id as hex text.
func (k *Key) ID() string { return k.id.String() }

// RawID is the key's id as it is framed.
func (k *Key) RawID() ID { return k.id }

// Derive returns HMAC-SHA256(key, label): a 32-byte secret for another
// purpose than sealing (the fleet keys its etcd key names with one), that
// reveals nothing of the key. Each purpose has a label of its own.
func (k *Key) Derive(label string) []byte {
	m := hmac.New(sha256.New, k.raw[:])
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Find returns the key among keys whose id is id, or nil.
func Find(keys []*Key, id ID) *Key {
	for _, k := range keys {
		if k != nil && k.id == id {
			return k
		}
	}
	return nil
}

// Seal returns version ‖ key id ‖ header ‖ nonce ‖ ciphertext+tag, where
// header is the caller's clear-text header (bind it by putting it in aad)
// and the ciphertext is plain's, authenticated together with aad.
func (k *Key) Seal(version byte, header, plain, aad []byte) ([]byte, error) {
	out := make([]byte, 0, headerSize+len(header)+nonceSize+len(plain)+tagSize)
	out = append(out, version)
	out = append(out, k.id[:]...)
	out = append(out, header...)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plain, aad), nil
}

// Frame is the start of a sealed value as Split reads it.
type Frame struct {
	Version byte
	KeyID   ID
	// Rest is what follows the key id: the caller's clear header, then
	// the body that Open takes.
	Rest []byte
}

// Split reads the version and key id at the start of sealed. It does not
// authenticate anything.
func Split(sealed []byte) (Frame, error) {
	if len(sealed) < headerSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, shorter than version and key id", ErrMalformed, len(sealed))
	}
	f := Frame{Version: sealed[0], Rest: sealed[headerSize:]}
	copy(f.KeyID[:], sealed[1:headerSize])
	return f, nil
}

// Open authenticates and decrypts body (nonce ‖ ciphertext+tag, what
// follows the caller's clear header) under aad.
func (k *Key) Open(body, aad []byte) ([]byte, error) {
	if len(body) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes, shorter than nonce and tag", ErrMalformed, len(body))
	}
	plain, err := k.aead.Open(nil, body[:nonceSize], body[nonceSize:], aad)
	if err != nil {
		return nil, ErrTampered
	}
	return plain, nil
}
