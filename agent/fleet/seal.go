// Package fleet shares one token stream per profile fingerprint across
// hosts through etcd (see DESIGN.md, "Fleet"). Records in etcd are sealed
// with AES-256-GCM under the fleet's seal key and bound to the key prefix
// and the fingerprint, so that etcd and its backups never hold a
// plaintext token and a record moved to another fingerprint does not open.
// The engine's side (when to read, lock, fetch and write) is in package
// agent, behind its Fleet interface.
package fleet

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/store/seal"
)

// Record is a token as the fleet shares it.
type Record struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type,omitempty"`
	Scope       string    `json:"scope,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
	ObtainedAt  time.Time `json:"obtained_at"`
	// MintedBy names the host whose agent fetched it.
	MintedBy string `json:"minted_by,omitempty"`
	// Generation numbers a fingerprint's records: the writer's is one
	// more than the highest it has seen, so that an older record put back
	// into etcd (a replay) is recognised. Framed in the clear and bound in
	// the AAD (see Seal); 0 for a record of format version 1.
	Generation uint64 `json:"-"`
	// Failure, when set, is a permanent refusal the IdP gave a host: the
	// fleet holds off the IdP until Failure.Until instead of each host
	// learning it for itself. The token fields may still hold a valid
	// token to serve meanwhile (or be empty).
	Failure *Failure `json:"failure,omitempty"`
}

// Failure is a permanent IdP refusal shared by the fleet.
type Failure struct {
	Endpoint    string `json:"endpoint,omitempty"` // the token endpoint that refused
	Status      int    `json:"status,omitempty"`
	Code        string `json:"code,omitempty"`
	Description string `json:"description,omitempty"` // already cleaned of the secret
	// At is when the IdP refused; Until is when a host may ask it again.
	At    time.Time `json:"at"`
	Until time.Time `json:"until"`
	// Credential tags the client credential that was refused (a hash
	// prefix, not the credential): a host configured with another secret
	// or key, say a rotated one, does not hold itself back for it.
	Credential string `json:"credential"`
}

// Key is a seal key: 32 random bytes, the same on every host (see
// package seal).
type Key = seal.Key

// ParseKey reads a seal key: 32 bytes in standard base64.
func ParseKey(text string) (*Key, error) {
	k, err := seal.ParseKey([]byte(text), seal.FleetIDs)
	if err != nil {
		return nil, errors.New("seal_key must be 32 random bytes in standard base64 (openssl rand -base64 32)")
	}
	return k, nil
}

// ErrWrongKey: the fleet's pinned seal key id is not this host's.
var ErrWrongKey = errors.New("sealed with another seal_key")

// ErrTampered: a record that does not authenticate (altered, moved to
// another fingerprint's key, or sealed under a key id that is not this
// host's): junk, to be overwritten.
var ErrTampered = seal.ErrTampered

// Formats of a sealed record. Version 2 (this one writes) frames the
// record's generation in the clear after the key id and binds it, with
// the prefix and the fingerprint, in the AAD: a host reads it before it
// opens the record, and no one can change it without the seal key.
// Version 1 records (no generation) still open, as generation 0; the next
// refresh overwrites them.
const (
	formatV1      = 1
	formatVersion = 2
)

// genSize is the length of the generation in a version 2 frame.
const genSize = 8

// aad binds a record to the key prefix, the fingerprint it is for and,
// from version 2, its generation.
func aad(version byte, prefix, fingerprint string, generation uint64) []byte {
	a := []byte(fmt.Sprintf("tokenagent fleet v%d\x00%s\x00%s", version, prefix, fingerprint))
	if version >= 2 {
		a = binary.BigEndian.AppendUint64(append(a, 0), generation)
	}
	return a
}

// Seal encrypts r with k for fingerprint under prefix, in the seal
// framing with the generation as clear header: version(1) ‖ key id(8) ‖
// generation(8, big-endian) ‖ nonce(12) ‖ ciphertext+tag.
func Seal(k *Key, prefix, fingerprint string, r Record) ([]byte, error) {
	plain, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	header := binary.BigEndian.AppendUint64(nil, r.Generation)
	return k.Seal(formatVersion, header, plain, aad(formatVersion, prefix, fingerprint, r.Generation))
}

// Open decrypts a sealed record for fingerprint under prefix with the
// key that sealed it, among keys.
func Open(keys []*Key, prefix, fingerprint string, sealed []byte) (Record, error) {
	var r Record
	f, err := seal.Split(sealed)
	if err != nil || f.Version != formatV1 && f.Version != formatVersion {
		return r, fmt.Errorf("fleet record for %s: %w (malformed)", fingerprint, ErrTampered)
	}
	var generation uint64
	body := f.Rest
	if f.Version >= 2 {
		if len(body) < genSize {
			return r, fmt.Errorf("fleet record for %s: %w (malformed)", fingerprint, ErrTampered)
		}
		generation, body = binary.BigEndian.Uint64(body), body[genSize:]
	}
	if len(body) < seal.Overhead {
		return r, fmt.Errorf("fleet record for %s: %w (malformed)", fingerprint, ErrTampered)
	}
	k := seal.Find(keys, f.KeyID)
	if k == nil {
		// Not ErrWrongKey: only the pinned key id says whose key the
		// fleet's is (see Backend); anyone who can write etcd can write a
		// record under any key id.
		return r, fmt.Errorf("fleet record for %s: %w (sealed under key id %s, not this host's %s)", fingerprint, ErrTampered, f.KeyID, keyIDs(keys))
	}
	plain, err := k.Open(body, aad(f.Version, prefix, fingerprint, generation))
	if err != nil {
		return r, fmt.Errorf("fleet record for %s: %w", fingerprint, ErrTampered)
	}
	if err := json.Unmarshal(plain, &r); err != nil {
		return r, fmt.Errorf("fleet record for %s: %w (%v)", fingerprint, ErrTampered, err)
	}
	r.Generation = generation
	return r, nil
}

func keyIDs(keys []*Key) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID()
	}
	return strings.Join(ids, ", ")
}
