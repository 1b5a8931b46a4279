package ipc

import (
	"crypto/sha256"
	"encoding/hex"
)

// Fingerprint is how a token (or any secret) appears in logs, metrics
// and audit events: the first 12 hex digits of its SHA-256, enough to
// correlate, useless to an attacker.
func Fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:6])
}

// TokenSHA256 is the full hex SHA-256 of an access token: what a client
// sends in RefreshRequest.RejectedSHA256 to report a token an API refused.
func TokenSHA256(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return hex.EncodeToString(sum[:])
}
