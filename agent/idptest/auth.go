package idptest

// Client authentication: client_secret_basic, client_secret_post and
// private_key_jwt (RFC 7523) assertions, and certificates for clients that
// sign with them.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// requestClientID finds the claimed client id without authenticating it.
func requestClientID(r *http.Request) string {
	if id, _, ok := r.BasicAuth(); ok {
		if dec, err := url.QueryUnescape(id); err == nil {
			return dec
		}
		return id
	}
	if id := r.PostForm.Get("client_id"); id != "" {
		return id
	}
	a := r.PostForm.Get("client_assertion")
	if a == "" {
		a = r.PostForm.Get("assertion") // the jwt-bearer grant's
	}
	if a != "" {
		var claims jwt.RegisteredClaims
		if _, _, err := jwt.NewParser().ParseUnverified(a, &claims); err == nil {
			return claims.Issuer
		}
	}
	return ""
}

// authenticate checks the request's client authentication: a secret
// (Basic or in the form) or a signed assertion.
func (s *Server) authenticate(r *http.Request) (*Client, *tokenError) {
	unauthorized := &tokenError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
	s.mu.Lock()
	defer s.mu.Unlock()

	if rawID, rawSecret, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: both parts are form-urlencoded; a raw secret
		// with reserved characters fails to decode or decodes to
		// something else, and is rejected like a wrong one.
		id, err1 := url.QueryUnescape(rawID)
		secret, err2 := url.QueryUnescape(rawSecret)
		c := s.clients[id]
		if err1 != nil || err2 != nil || c == nil || c.Method != "client_secret_basic" || secret != c.Secret {
			return nil, unauthorized
		}
		return c, nil
	}
	form := r.PostForm
	if assertion := form.Get("client_assertion"); assertion != "" {
		if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			return nil, &tokenError{http.StatusBadRequest, "invalid_request", "client_assertion_type must be jwt-bearer"}
		}
		if c := s.clients[form.Get("client_id")]; c != nil && c.Method == "client_assertion" && c.Federated != nil {
			return s.verifyFederated(c, assertion)
		}
		return s.verifyAssertion(assertion, form.Get("client_id"))
	}
	c := s.clients[form.Get("client_id")]
	if c == nil || c.Method != "client_secret_post" || form.Get("client_secret") != c.Secret || c.Secret == "" {
		return nil, unauthorized
	}
	return c, nil
}

// verifyAssertion checks an RFC 7523 client assertion; s.mu is held.
func (s *Server) verifyAssertion(assertion, formClientID string) (*Client, *tokenError) {
	bad := func(why string) *tokenError {
		return &tokenError{http.StatusUnauthorized, "invalid_client", "client assertion rejected: " + why}
	}
	var unverified jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(assertion, &unverified); err != nil {
		return nil, bad("malformed")
	}
	c := s.clients[unverified.Issuer]
	if c == nil || c.Method != "private_key_jwt" || c.PublicKey == nil {
		return nil, bad("unknown client")
	}
	if formClientID != "" && formClientID != c.ID {
		return nil, bad("client_id does not match iss")
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(assertion, &claims,
		func(*jwt.Token) (any, error) { return c.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256", "PS256", "ES256"}),
		jwt.WithAudience(s.TokenURL),
		jwt.WithIssuer(c.ID),
		jwt.WithSubject(c.ID),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now),
		jwt.WithLeeway(30*time.Second),
	)
	if err != nil {
		return nil, bad(err.Error())
	}
	if claims.ExpiresAt.Sub(s.now()) > time.Hour {
		return nil, bad("exp is more than an hour away")
	}
	if claims.ID == "" {
		return nil, bad("no jti")
	}
	if _, seen := s.jtis[claims.ID]; seen {
		return nil, bad("jti replayed")
	}
	s.jtis[claims.ID] = claims.ExpiresAt.Time
	return c, nil
}

// GrantJWTBearer is the RFC 7523 §2.1 grant type.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// verifyGrant checks an RFC 7523 §2.1 authorization grant the way
// Google's token endpoint does for a service-account key: signed RS256 by
// the key of the client its iss names (Method "jwt_bearer"), aud the
// token endpoint, iat and exp present, exp at most an hour after iat. It
// returns the client and the scope the assertion asks for.
func (s *Server) verifyGrant(assertion string) (*Client, string, *tokenError) {
	bad := func(why string) *tokenError {
		return &tokenError{http.StatusBadRequest, "invalid_grant", "assertion rejected: " + why}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var unverified jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(assertion, &unverified); err != nil {
		return nil, "", bad("malformed")
	}
	c := s.clients[unverified.Issuer]
	if c == nil || c.Method != "jwt_bearer" || c.PublicKey == nil {
		return nil, "", bad("unknown service account")
	}
	var claims struct {
		jwt.RegisteredClaims
		Scope string `json:"scope"`
	}
	_, err := jwt.ParseWithClaims(assertion, &claims,
		func(*jwt.Token) (any, error) { return c.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithAudience(s.TokenURL),
		jwt.WithIssuer(c.ID),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.now),
		jwt.WithLeeway(30*time.Second),
	)
	if err != nil {
		return nil, "", bad(err.Error())
	}
	if claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > time.Hour {
		return nil, "", bad("iat missing, or exp more than an hour after it")
	}
	return c, claims.Scope, nil
}

// SelfSigned returns a self-signed certificate for key, valid from an hour
// ago for a day: what a test needs for x5t headers and PKCS#12 bundles.
func SelfSigned(key crypto.Signer) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tokenagent test client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("idptest: certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// serviceAccountKey is the one service-account key of a process, apart
// from the server's signing key (RSA generation is slow).
var serviceAccountKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("idptest: generate key: " + err.Error()) // crypto/rand failing is not recoverable
	}
	return key
})

// AddServiceAccount registers a service account (a "jwt_bearer" client
// whose ID is email, limited to scopes when any are given) and returns its
// JSON key as Google issues it, with token_uri this server's token
// endpoint: what a profile's credentials file holds.
func (s *Server) AddServiceAccount(email string, scopes ...string) []byte {
	s.AddClient(Client{ID: email, Method: "jwt_bearer", PublicKey: &serviceAccountKey().PublicKey, Scopes: scopes})
	return ServiceAccountKey(email, s.TokenURL)
}

// ServiceAccountKey is the JSON key of the service account email, naming
// tokenURI, before any server knows it (AddServiceAccount registers the
// same key: there is one per process).
func ServiceAccountKey(email, tokenURI string) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(serviceAccountKey())
	if err != nil {
		panic("idptest: marshal key: " + err.Error())
	}
	out, _ := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     "tokenagent-test",
		"private_key_id": "idptest-sa-1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   email,
		"client_id":      "100000000000000000001",
		"token_uri":      tokenURI,
	}, "", "  ")
	return out
}
