package idptest

// Client authentication by a platform's token (federated credentials):
// the client registers no secret and no key of its own, but trusts the
// tokens one issuer signs for one subject and audience — Entra's
// federated identity credentials, Keycloak's federated JWT clients, a
// Kubernetes cluster's service-account tokens.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Federated is the platform a "client_assertion" client trusts.
type Federated struct {
	// Issuer, Subject and Audience are the iss, sub and aud the
	// platform's tokens must carry (Entra: the cluster's OIDC issuer,
	// system:serviceaccount:NS:NAME, api://AzureADTokenExchange).
	Issuer, Subject, Audience string
	// PublicKey verifies them (the platform's JWKS, in short).
	PublicKey crypto.PublicKey
	// SingleUse refuses a jti seen before, as oidc-provider does; by
	// default a token may be sent again until its exp, as Entra allows.
	SingleUse bool
}

// verifyFederated checks a platform's token sent as the client assertion
// of c, whose Federated says what to trust; s.mu is held.
func (s *Server) verifyFederated(c *Client, assertion string) (*Client, *tokenError) {
	bad := func(why string) *tokenError {
		return &tokenError{http.StatusUnauthorized, "invalid_client", "client assertion rejected: " + why}
	}
	f := c.Federated
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(assertion, &claims,
		func(*jwt.Token) (any, error) { return f.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256", "PS256", "ES256"}),
		jwt.WithAudience(f.Audience),
		jwt.WithIssuer(f.Issuer),
		jwt.WithSubject(f.Subject),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now),
		jwt.WithLeeway(30*time.Second),
	)
	if err != nil {
		return nil, bad(err.Error())
	}
	if f.SingleUse {
		if _, seen := s.jtis[claims.ID]; seen || claims.ID == "" {
			return nil, bad("jti missing or replayed")
		}
		s.jtis[claims.ID] = claims.ExpiresAt.Time
	}
	return c, nil
}

// PlatformKeyID is the kid of a Platform's tokens, which its JWKS names.
const PlatformKeyID = "platform-1"

// Platform issues the tokens a workload's platform writes to a file
// (kubelet's projected service-account token, a SPIFFE JWT-SVID): ES256
// with a key of its own.
type Platform struct {
	key *ecdsa.PrivateKey
}

// NewPlatform makes a platform with a fresh P-256 key.
func NewPlatform() *Platform {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("idptest: generate key: " + err.Error()) // crypto/rand failing is not recoverable
	}
	return &Platform{key: key}
}

// PublicKey verifies the platform's tokens.
func (p *Platform) PublicKey() *ecdsa.PublicKey { return &p.key.PublicKey }

// Mint signs a token for subject at audience from issuer, valid from
// now until exp, with a random jti.
func (p *Platform) Mint(issuer, subject, audience string, now, exp time.Time) string {
	var jti [16]byte
	rand.Read(jti[:])
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": issuer, "sub": subject, "aud": audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		"jti": hex.EncodeToString(jti[:]),
	})
	tok.Header["kid"] = PlatformKeyID
	signed, err := tok.SignedString(p.key)
	if err != nil {
		panic(fmt.Sprintf("idptest: sign: %v", err)) // an in-memory P-256 key does not fail to sign
	}
	return signed
}

// Project writes content to dir/name as kubelet updates a projected
// volume: into a new timestamped directory, then ..data, a symlink to
// it, is replaced by renaming a new symlink over it, and the previous
// directory removed. dir/name is a symlink to ..data/name from the first
// call on. A reader holding the path sees the old file or the new one,
// never a mix — but the path resolves to another inode.
func Project(dir, name string, content []byte) error {
	link := filepath.Join(dir, name)
	if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	ts, err := os.MkdirTemp(dir, "..2026_12_06_")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ts, name), content, 0o600); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}
