package idp

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenagent/tokenagent/agent/idp/spec"
)

// GrantJWTBearer is the RFC 7523 §2.1 grant_type of AuthJWTBearer.
const GrantJWTBearer = spec.GrantJWTBearer

// ServiceAccountKey is what the agent takes from a service-account JSON
// key, as Google issues it (`gcloud iam service-accounts keys create`).
type ServiceAccountKey struct {
	// ClientEmail is the service account: the assertion's iss.
	ClientEmail string
	// TokenURI is the token endpoint the key names: the assertion's aud
	// and where it is posted, unless the profile's token_url overrides it.
	TokenURI string
	// PrivateKeyID goes in the assertion's kid header.
	PrivateKeyID string
	// Signer signs with the key's private_key (RS256).
	Signer *Signer
}

// ParseServiceAccountKey reads a service-account JSON key: client_email,
// private_key (PEM) and token_uri are required. Errors name the field,
// never the key.
func ParseServiceAccountKey(data []byte) (*ServiceAccountKey, error) {
	var raw struct {
		Type         string `json:"type"`
		ClientEmail  string `json:"client_email"`
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		// json's errors quote no more than a character of the input.
		return nil, fmt.Errorf("not a service-account JSON key: %w", err)
	}
	if raw.Type != "" && raw.Type != "service_account" {
		return nil, fmt.Errorf("type is %q, not service_account: use a service account's key (gcloud iam service-accounts keys create)", raw.Type)
	}
	switch {
	case raw.ClientEmail == "":
		return nil, errors.New("the key has no client_email")
	case raw.PrivateKey == "":
		return nil, errors.New("the key has no private_key")
	case raw.TokenURI == "":
		return nil, errors.New("the key has no token_uri (set token_url in the profile)")
	}
	key, err := ParsePEMKey([]byte(raw.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	signer, err := NewSigner(SignerConfig{Key: key, Algorithm: "RS256", Kid: raw.PrivateKeyID})
	if err != nil {
		return nil, err
	}
	return &ServiceAccountKey{ClientEmail: raw.ClientEmail, TokenURI: raw.TokenURI, PrivateKeyID: raw.PrivateKeyID, Signer: signer}, nil
}

// GrantAssertion returns the RFC 7523 §2.1 authorization grant of a
// service account: iss = issuer (the account's email), the space-separated
// scope, aud = audience (the token endpoint), iat and a short exp — the
// claims Google's token endpoint takes. A sub would ask for another
// user's authority (domain-wide delegation), which the agent never does.
func (s *Signer) GrantAssertion(issuer, scope, audience string, now time.Time) (string, error) {
	claims := jwt.MapClaims{
		"iss": issuer,
		"aud": audience,
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}
	if scope != "" {
		claims["scope"] = scope
	}
	return s.sign(claims)
}
