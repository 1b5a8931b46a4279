package idp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenagent/tokenagent/agent/idp/spec"
)

// ClientAssertionType is the RFC 7523 client_assertion_type for a JWT.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion is valid. Short, because
// it is a bearer credential; long enough for a slow round trip and modest
// clock skew. (Okta allows at most 1 h, Entra 10 min.)
const assertionLifetime = 2 * time.Minute

// Thumbprint header choices for [SignerConfig.Thumbprint].
const (
	ThumbprintNone   = spec.ThumbprintNone
	ThumbprintSHA1   = spec.ThumbprintSHA1
	ThumbprintSHA256 = spec.ThumbprintSHA256
)

// SignerConfig says how to sign client assertions.
type SignerConfig struct {
	// Key is the private key: *rsa.PrivateKey or a P-256 *ecdsa.PrivateKey.
	Key crypto.Signer
	// Certificate is the key's certificate; needed only for a thumbprint header.
	Certificate *x509.Certificate
	// Algorithm is RS256, PS256 or ES256; empty picks RS256 for RSA keys and
	// ES256 for EC keys.
	Algorithm string
	// Thumbprint adds an x5t or x5t#S256 header from Certificate; empty or
	// "none" adds none.
	Thumbprint string
	// Kid, if set, is the kid header: which of the account's keys signed
	// (a service-account key's private_key_id).
	Kid string
}

// Signer makes RFC 7523 client assertions (private_key_jwt).
type Signer struct {
	key    crypto.Signer
	method jwt.SigningMethod
	header map[string]string
}

// NewSigner checks that the key, algorithm and thumbprint fit together.
func NewSigner(cfg SignerConfig) (*Signer, error) {
	if cfg.Key == nil {
		return nil, errors.New("idp: assertion: no private key")
	}
	alg := cfg.Algorithm
	switch k := cfg.Key.(type) {
	case *rsa.PrivateKey:
		if alg == "" {
			alg = "RS256"
		}
		if alg != "RS256" && alg != "PS256" {
			return nil, fmt.Errorf("idp: assertion: algorithm %s does not fit an RSA key (use RS256 or PS256)", alg)
		}
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("idp: assertion: RSA key is %d bits; identity providers require at least 2048", k.N.BitLen())
		}
	case *ecdsa.PrivateKey:
		if alg == "" {
			alg = "ES256"
		}
		if alg != "ES256" {
			return nil, fmt.Errorf("idp: assertion: algorithm %s does not fit an EC key (use ES256)", alg)
		}
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("idp: assertion: EC key is on %s; ES256 needs P-256", k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("idp: assertion: unsupported key type %T (use RSA or EC P-256)", cfg.Key)
	}
	s := &Signer{key: cfg.Key, method: jwt.GetSigningMethod(alg), header: map[string]string{}}
	if cfg.Kid != "" {
		s.header["kid"] = cfg.Kid
	}
	switch cfg.Thumbprint {
	case "", ThumbprintNone:
	case ThumbprintSHA1, ThumbprintSHA256:
		if cfg.Certificate == nil {
			return nil, fmt.Errorf("idp: assertion: %s header needs the key's certificate", cfg.Thumbprint)
		}
		if !publicKeysEqual(cfg.Certificate.PublicKey, cfg.Key.Public()) {
			return nil, errors.New("idp: assertion: the certificate does not belong to the private key")
		}
		s.header[cfg.Thumbprint] = Thumbprint(cfg.Certificate, cfg.Thumbprint)
	default:
		return nil, fmt.Errorf("idp: assertion: unknown thumbprint header %q (use x5t, x5t#S256 or none)", cfg.Thumbprint)
	}
	return s, nil
}

// KeyID identifies the signing key and settings (a hash of the public
// key, algorithm and headers), to tell whether a reload changed them.
func (s *Signer) KeyID() string {
	der, _ := x509.MarshalPKIXPublicKey(s.key.Public())
	h := sha256.New()
	h.Write(der)
	fmt.Fprint(h, s.method.Alg(), s.header)
	return hex.EncodeToString(h.Sum(nil))
}

// Algorithm is the JWS algorithm the signer uses.
func (s *Signer) Algorithm() string { return s.method.Alg() }

// Thumbprint is the base64url certificate thumbprint for an x5t (SHA-1) or
// x5t#S256 header.
func Thumbprint(cert *x509.Certificate, kind string) string {
	if kind == ThumbprintSHA1 {
		sum := sha1.Sum(cert.Raw)
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Assertion returns a signed client assertion for clientID at audience
// (the token endpoint): iss = sub = clientID, a unique jti, a short exp.
func (s *Signer) Assertion(clientID, audience string, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("idp: assertion: %w", err)
	}
	// aud is a single string: RFC 7523 allows an array, but some servers
	// accept only a string.
	claims := jwt.MapClaims{
		"iss": clientID,
		"sub": clientID,
		"aud": audience,
		"jti": hex.EncodeToString(jti[:]),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}
	return s.sign(claims)
}

// sign signs claims with the key, its header fields (kid, x5t …) set.
func (s *Signer) sign(claims jwt.MapClaims) (string, error) {
	tok := jwt.NewWithClaims(s.method, claims)
	for k, v := range s.header {
		tok.Header[k] = v
	}
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("idp: assertion: sign with %s: %w", s.method.Alg(), err)
	}
	return signed, nil
}

// ParsePEMKey reads a private key from PEM: PKCS#8 ("PRIVATE KEY"), PKCS#1
// ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"). Other blocks, such as a
// certificate in the same file, are skipped. Encrypted PEM is refused:
// use PKCS#12 for a password-protected key.
func ParsePEMKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found")
		}
		if block.Headers["Proc-Type"] != "" || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the PEM key is encrypted; decrypt it (openssl pkcs8 -nocrypt) or use a PKCS#12 file with pkcs12_password")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s block: %w", block.Type, err)
		}
		return asSigner(key)
	}
}

// ParsePEMCertificate reads the first CERTIFICATE block.
func ParsePEMCertificate(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no CERTIFICATE block found")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// ParsePKCS12 reads a private key and its certificate from a PKCS#12 bundle,
// modern (PBES2/AES, OpenSSL 3's default) or legacy (3DES, RC2). The error
// never contains the password.
func ParsePKCS12(data []byte, password string) (crypto.Signer, *x509.Certificate, error) {
	key, cert, _, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		if errors.Is(err, pkcs12.ErrIncorrectPassword) {
			return nil, nil, errors.New("wrong PKCS#12 password (check pkcs12_password)")
		}
		return nil, nil, fmt.Errorf("not a readable PKCS#12 bundle: %w", err)
	}
	signer, err := asSigner(key)
	if err != nil {
		return nil, nil, err
	}
	return signer, cert, nil
}

func asSigner(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T (use RSA or EC P-256)", key)
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
