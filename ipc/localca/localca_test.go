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
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func newCA(t *testing.T, now func() time.Time) (*CA, []byte) {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := New(key, nil, "host-a", now)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// TestLoopbackHandshake: a client that trusts only the CA's certificate
// reaches a real TLS listener on 127.0.0.1 and ::1, by address and as
// localhost.
func TestLoopbackHandshake(t *testing.T) {
	ca, _ := newCA(t, nil)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.CertPEM()) {
		t.Fatal("CertPEM does not parse")
	}
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := tls.Listen("tcp", network, ca.TLSConfig())
		if err != nil {
			t.Logf("%s: %v (skipped)", network, err)
			continue
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.WriteString(c, "hello"); c.Close() }()
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		for _, name := range []string{host, "localhost"} {
			c, err := tls.Dial("tcp", net.JoinHostPort(host, port), &tls.Config{RootCAs: roots, ServerName: name})
			if err != nil {
				t.Errorf("%s as %s: %v", ln.Addr(), name, err)
				continue
			}
			got, _ := io.ReadAll(c)
			c.Close()
			if string(got) != "hello" {
				t.Errorf("%s as %s: read %q", ln.Addr(), name, got)
			}
		}
	}
}

// TestCAVouchesForLoopbackOnly: a certificate for any other name, even
// signed with the CA's key, does not verify: the CA's name constraints
// hold it to loopback, so its key could impersonate no real server.
func TestCAVouchesForLoopbackOnly(t *testing.T) {
	ca, _ := newCA(t, nil)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert())
	for _, tc := range []struct {
		name string
		tmpl x509.Certificate
	}{
		{"a DNS name", x509.Certificate{DNSNames: []string{"login.microsoftonline.com"}}},
		{"an IP address", x509.Certificate{IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}},
	} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := tc.tmpl
		tmpl.SerialNumber, tmpl.Subject = serial(), pkix.Name{CommonName: "x"}
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, &key.PublicKey, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
			t.Errorf("%s signed with the CA's key verifies; the CA must vouch for loopback only", tc.name)
		}
	}
}

// TestLeafRenewedAsItAges: the leaf is kept while more than a third of
// its life is left and made anew after, with no restart; handshakes
// during the change all succeed.
func TestLeafRenewedAsItAges(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ca, _ := newCA(t, clock)
	first, err := ca.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	advance(LeafLifetime / 2)
	if again, _ := ca.Leaf(); again != first {
		t.Error("the leaf was renewed with half its life left")
	}
	advance(LeafLifetime / 4)
	renewed, _ := ca.Leaf()
	if renewed == first {
		t.Fatal("the leaf was not renewed with a quarter of its life left")
	}
	if !renewed.Leaf.NotAfter.Equal(clock().Add(LeafLifetime)) {
		t.Errorf("renewed leaf expires %v, want %v", renewed.Leaf.NotAfter, clock().Add(LeafLifetime))
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert())
	if _, err := renewed.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost", CurrentTime: clock()}); err != nil {
		t.Errorf("renewed leaf: %v", err)
	}
}

// TestCACertificateKeptAcrossStarts: a start with the published
// certificate keeps it (callers' trust is unchanged); one of another key,
// or near its end, is made anew.
func TestCACertificateKeptAcrossStarts(t *testing.T) {
	ca, key := newCA(t, nil)
	again, err := New(key, ca.CertPEM(), "host-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Error("a restart with the published certificate made a new one")
	}
	other, _ := newCA(t, nil)
	if mixed, _ := New(key, other.CertPEM(), "host-a", nil); bytes.Equal(mixed.CertPEM(), other.CertPEM()) {
		t.Error("another key's certificate was kept")
	}
	late := func() time.Time { return time.Now().Add(CALifetime - CARenewBefore/2) }
	if old, _ := New(key, ca.CertPEM(), "host-a", late); bytes.Equal(old.CertPEM(), ca.CertPEM()) {
		t.Error("a certificate with half a year left was kept")
	}
}

func TestBadKeys(t *testing.T) {
	rsaLike := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("x")})
	for name, key := range map[string][]byte{"empty": nil, "not PEM": []byte("garbage"), "other type": rsaLike,
		"bad DER": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")})} {
		if _, err := New(key, nil, "h", nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
