package store

// The sealed record: its clear header (version, key id), the AAD that binds
// it to its profile and fingerprint, and the payload inside.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tokenagent/tokenagent/store/seal"
)

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
