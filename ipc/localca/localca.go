// Package localca is the agent's own certificate authority for its
// loopback HTTPS doors. The CA's key is the agent's alone (the caller of
// New keeps it in a 0600 file that never leaves the host); its
// certificate is what callers trust, and it may only vouch for loopback
// names (name constraints: 127.0.0.0/8, ::1 and localhost), so that its
// key, were it ever taken, could not impersonate any other server. The
// leaf certificate, for 127.0.0.1, ::1 and localhost, lives a day, is
// made in memory and renewed by the TLS handshake that finds it past two
// thirds of its life: no restart, no timer.
package localca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// Lifetimes.
const (
	// CALifetime is how long a CA certificate made by New is valid; one
	// with less than CARenewBefore left is made again (same key: what
	// callers trust goes on verifying).
	CALifetime    = 10 * 365 * 24 * time.Hour
	CARenewBefore = 365 * 24 * time.Hour
	// LeafLifetime is a leaf certificate's validity; it is renewed once
	// a third of it is left.
	LeafLifetime = 24 * time.Hour
	// backdate covers clocks a little behind the agent's.
	backdate = 5 * time.Minute
)

// commonName names the CA in what callers see (a browser, openssl s_client).
const commonName = "tokenagent local CA"

// NewKey makes a CA key: PEM "PRIVATE KEY" (PKCS #8, ECDSA P-256).
func NewKey() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CA issues the loopback doors' certificates.
type CA struct {
	key     *ecdsa.PrivateKey
	cert    *x509.Certificate
	certPEM []byte
	host    string // the agent's host name, in the CA's subject

	mu   sync.Mutex
	now  func() time.Time
	leaf *tls.Certificate
}

// New returns the CA of keyPEM (from NewKey). certPEM is the certificate
// published before, if any: it is kept when it is this key's and has more
// than CARenewBefore left, so that what callers trust does not change at
// every start. host names the agent's host in a new certificate's
// subject; now is the clock (nil: time.Now).
func New(keyPEM, certPEM []byte, host string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the key does not parse: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, not the ECDSA key the agent makes", k)
	}
	ca := &CA{key: key, host: host, now: now}
	if cert := ca.reusable(certPEM); cert != nil {
		ca.cert, ca.certPEM = cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		return ca, nil
	}
	if err := ca.newCert(); err != nil {
		return nil, err
	}
	return ca, nil
}

// reusable returns certPEM's certificate if it is this CA's, by key and
// name, with more than CARenewBefore left.
func (ca *CA) reusable(certPEM []byte) *x509.Certificate {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA || cert.Subject.CommonName != commonName {
		return nil
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&ca.key.PublicKey) || ca.now().Add(CARenewBefore).After(cert.NotAfter) {
		return nil
	}
	return cert
}

func (ca *CA) newCert() error {
	now := ca.now()
	_, v4, _ := net.ParseCIDR("127.0.0.0/8")
	_, v6, _ := net.ParseCIDR("::1/128")
	tmpl := &x509.Certificate{
		SerialNumber:                serial(),
		Subject:                     pkix.Name{CommonName: commonName, OrganizationalUnit: []string{ca.host}},
		NotBefore:                   now.Add(-backdate),
		NotAfter:                    now.Add(CALifetime),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{"localhost"},
		PermittedIPRanges:           []*net.IPNet{v4, v6},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ca.key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("making the local CA's certificate: %w", err)
	}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// CertPEM is the CA's certificate, what callers trust.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Cert is the CA's certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// TLSConfig is the server side of a loopback HTTPS door: the current
// leaf, renewed as it ages; TLS 1.2 and later, HTTP/1.1.
func (ca *CA) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Leaf() },
	}
}

// Leaf returns the leaf certificate, made anew when none is held or the
// one held has less than a third of its life left.
func (ca *CA) Leaf() (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	if ca.leaf != nil && now.Add(LeafLifetime/3).Before(ca.leaf.Leaf.NotAfter) {
		return ca.leaf, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(LeafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("making the loopback certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	ca.leaf = &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
	return ca.leaf, nil
}
