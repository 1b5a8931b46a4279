// Package fleet shares one token stream per profile fingerprint across
// hosts through etcd (see DESIGN.md, "Fleet"). Records in etcd are sealed
// with AES-256-GCM under the fleet's seal key and bound to the key prefix
// and the fingerprint, so that etcd and its backups never hold a
// plaintext token and a record moved to another fingerprint does not open.
// The engine's side (when to read, lock, fetch and write) is in package
// agent, behind its Fleet interface.
package fleet

import (
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

const formatVersion = 1

// aad binds a record to the key prefix and the fingerprint it is for.
func aad(prefix, fingerprint string) []byte {
	return []byte(fmt.Sprintf("tokenagent fleet v%d\x00%s\x00%s", formatVersion, prefix, fingerprint))
}

// Seal encrypts r with k for fingerprint under prefix, in the seal
// framing with no clear header: version(1) ‖ key id(8) ‖ nonce(12) ‖
// ciphertext+tag.
func Seal(k *Key, prefix, fingerprint string, r Record) ([]byte, error) {
	plain, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return k.Seal(formatVersion, nil, plain, aad(prefix, fingerprint))
}

// Open decrypts a sealed record for fingerprint under prefix with the
// key that sealed it, among keys.
func Open(keys []*Key, prefix, fingerprint string, sealed []byte) (Record, error) {
	var r Record
	f, err := seal.Split(sealed)
	if err != nil || f.Version != formatVersion || len(f.Rest) < seal.Overhead {
		return r, fmt.Errorf("fleet record for %s: %w (malformed)", fingerprint, ErrTampered)
	}
	k := seal.Find(keys, f.KeyID)
	if k == nil {
		// Not ErrWrongKey: only the pinned key id says whose key the
		// fleet's is (see Backend); anyone who can write etcd can write a
		// record under any key id.
		return r, fmt.Errorf("fleet record for %s: %w (sealed under key id %s, not this host's %s)", fingerprint, ErrTampered, f.KeyID, keyIDs(keys))
	}
	plain, err := k.Open(f.Rest, aad(prefix, fingerprint))
	if err != nil {
		return r, fmt.Errorf("fleet record for %s: %w", fingerprint, ErrTampered)
	}
	if err := json.Unmarshal(plain, &r); err != nil {
		return r, fmt.Errorf("fleet record for %s: %w (%v)", fingerprint, ErrTampered, err)
	}
	return r, nil
}

func keyIDs(keys []*Key) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID()
	}
	return strings.Join(ids, ", ")
}
