package idp_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/agent/idptest"
)

var update = flag.Bool("update", false, "rewrite golden files")

type keySet struct {
	rsa     *rsa.PrivateKey
	rsaCert *x509.Certificate
	ec      *ecdsa.PrivateKey
	ecCert  *x509.Certificate
}

var (
	keysOnce sync.Once
	keys     keySet
)

// testKeys makes one RSA and one EC key (with certificates) per test binary:
// RSA generation is slow.
func testKeys(t testing.TB) keySet {
	t.Helper()
	keysOnce.Do(func() {
		r, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		keys = keySet{rsa: r, rsaCert: selfSigned(r), ec: e, ecCert: selfSigned(e)}
	})
	return keys
}

func selfSigned(key crypto.Signer) *x509.Certificate {
	cert, err := idptest.SelfSigned(key)
	if err != nil {
		panic(err)
	}
	return cert
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// loadedKey is a key read back through one of the supported formats.
type loadedKey struct {
	name string
	key  crypto.Signer
	cert *x509.Certificate
}

func keyFormats(t *testing.T) []loadedKey {
	t.Helper()
	k := testKeys(t)
	const password = "p12-pass"
	var out []loadedKey
	addPEM := func(name string, data []byte) {
		key, err := idp.ParsePEMKey(data)
		if err != nil {
			t.Fatalf("ParsePEMKey(%s): %v", name, err)
		}
		out = append(out, loadedKey{name: name, key: key})
	}
	rsaPKCS8, _ := x509.MarshalPKCS8PrivateKey(k.rsa)
	ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(k.ec)
	ecSEC1, _ := x509.MarshalECPrivateKey(k.ec)
	addPEM("RSA PKCS#8 PEM", pemBytes("PRIVATE KEY", rsaPKCS8))
	addPEM("RSA PKCS#1 PEM", pemBytes("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa)))
	addPEM("EC PKCS#8 PEM", pemBytes("PRIVATE KEY", ecPKCS8))
	addPEM("EC SEC1 PEM after a certificate", append(pemBytes("CERTIFICATE", k.ecCert.Raw), pemBytes("EC PRIVATE KEY", ecSEC1)...))

	addP12 := func(name string, enc *pkcs12.Encoder, key crypto.Signer, cert *x509.Certificate) {
		data, err := enc.Encode(key, cert, nil, password)
		if err != nil {
			t.Fatalf("encode %s: %v", name, err)
		}
		gotKey, gotCert, err := idp.ParsePKCS12(data, password)
		if err != nil {
			t.Fatalf("ParsePKCS12(%s): %v", name, err)
		}
		out = append(out, loadedKey{name: name, key: gotKey, cert: gotCert})
	}
	addP12("PKCS#12 modern AES RSA", pkcs12.Modern2023, k.rsa, k.rsaCert)
	addP12("PKCS#12 legacy 3DES RSA", pkcs12.LegacyDES, k.rsa, k.rsaCert)
	addP12("PKCS#12 legacy RC2 RSA", pkcs12.LegacyRC2, k.rsa, k.rsaCert)
	addP12("PKCS#12 modern AES EC", pkcs12.Modern2023, k.ec, k.ecCert)

	// Bundles made by the openssl command itself, OpenSSL 3's default
	// (PBES2/AES-256) and -legacy (3DES): the files users really have.
	if openssl, err := exec.LookPath("openssl"); err == nil {
		dir := t.TempDir()
		keyFile, certFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
		os.WriteFile(keyFile, pemBytes("PRIVATE KEY", rsaPKCS8), 0o600)
		os.WriteFile(certFile, pemBytes("CERTIFICATE", k.rsaCert.Raw), 0o600)
		for _, extra := range [][]string{nil, {"-legacy"}} {
			p12 := filepath.Join(dir, "out.p12")
			args := append([]string{"pkcs12", "-export", "-inkey", keyFile, "-in", certFile, "-out", p12, "-passout", "pass:" + password}, extra...)
			if msg, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
				if len(extra) > 0 { // -legacy needs OpenSSL 3's legacy provider
					t.Logf("openssl %s: %v: %s", strings.Join(extra, " "), err, msg)
					continue
				}
				t.Fatalf("openssl pkcs12 -export: %v: %s", err, msg)
			}
			data, _ := os.ReadFile(p12)
			key, cert, err := idp.ParsePKCS12(data, password)
			if err != nil {
				t.Fatalf("ParsePKCS12(openssl %v): %v", extra, err)
			}
			out = append(out, loadedKey{name: "openssl pkcs12 " + strings.Join(extra, " "), key: key, cert: cert})
		}
	} else {
		t.Log("openssl not installed; OpenSSL-made PKCS#12 bundles not tested")
	}
	return out
}

func TestKeyFormatsSignAcceptedAssertions(t *testing.T) {
	srv := newServer(t)
	for i, lk := range keyFormats(t) {
		algs := []string{"ES256"}
		if _, ok := lk.key.(*rsa.PrivateKey); ok {
			algs = []string{"RS256", "PS256"}
		}
		for _, alg := range algs {
			t.Run(lk.name+"/"+alg, func(t *testing.T) {
				id := "client-" + alg + "-" + string(rune('a'+i))
				srv.AddClient(idptest.Client{ID: id, Method: idp.AuthPrivateKeyJWT, PublicKey: lk.key.Public()})
				thumb := ""
				if lk.cert != nil {
					thumb = idp.ThumbprintSHA256
				}
				signer, err := idp.NewSigner(idp.SignerConfig{Key: lk.key, Certificate: lk.cert, Algorithm: alg, Thumbprint: thumb})
				if err != nil {
					t.Fatalf("NewSigner: %v", err)
				}
				if _, err := fetch(t, idp.Config{TokenURL: srv.TokenURL, ClientID: id, AuthMethod: idp.AuthPrivateKeyJWT, Signer: signer}); err != nil {
					t.Errorf("Fetch() with %s %s assertion: %v", lk.name, alg, err)
				}
			})
		}
	}
}

func TestAssertionReplayRejected(t *testing.T) {
	srv := newServer(t)
	k := testKeys(t)
	srv.AddClient(idptest.Client{ID: "c", Method: idp.AuthPrivateKeyJWT, PublicKey: k.rsa.Public()})
	signer, _ := idp.NewSigner(idp.SignerConfig{Key: k.rsa})
	assertion, err := signer.Assertion("c", srv.TokenURL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	post := func() int {
		resp, err := httpPostForm(srv.TokenURL, map[string]string{
			"grant_type": "client_credentials", "client_assertion_type": idp.ClientAssertionType, "client_assertion": assertion,
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if got := post(); got != 200 {
		t.Fatalf("first use: status %d, want 200", got)
	}
	if got := post(); got != 401 {
		t.Errorf("replayed assertion: status %d, want 401", got)
	}
}

func TestWrongPKCS12PasswordNotInError(t *testing.T) {
	k := testKeys(t)
	data, err := pkcs12.Modern2023.Encode(k.rsa, k.rsaCert, nil, "right-password")
	if err != nil {
		t.Fatal(err)
	}
	const wrong = "Wr0ng-Pa55word"
	_, _, err = idp.ParsePKCS12(data, wrong)
	if err == nil || strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), "right-password") {
		t.Errorf("ParsePKCS12(wrong password) = %v, want an error without the password", err)
	}
	if err != nil && !strings.Contains(err.Error(), "password") {
		t.Errorf("ParsePKCS12(wrong password) = %q, want it to say the password is wrong", err)
	}
}

func TestNewSignerRejectsMismatches(t *testing.T) {
	k := testKeys(t)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name string
		cfg  idp.SignerConfig
		want string
	}{
		{"ES256 with RSA", idp.SignerConfig{Key: k.rsa, Algorithm: "ES256"}, "RSA"},
		{"RS256 with EC", idp.SignerConfig{Key: k.ec, Algorithm: "RS256"}, "EC"},
		{"HS256", idp.SignerConfig{Key: k.rsa, Algorithm: "HS256"}, "HS256"},
		{"P-384", idp.SignerConfig{Key: p384}, "P-256"},
		{"1024-bit RSA", idp.SignerConfig{Key: small}, "2048"},
		{"x5t without certificate", idp.SignerConfig{Key: k.rsa, Thumbprint: idp.ThumbprintSHA1}, "certificate"},
		{"certificate of another key", idp.SignerConfig{Key: k.rsa, Certificate: k.ecCert, Thumbprint: idp.ThumbprintSHA1}, "does not belong"},
		{"unknown thumbprint", idp.SignerConfig{Key: k.rsa, Certificate: k.rsaCert, Thumbprint: "x5c"}, "x5c"},
	}
	for _, tt := range tests {
		if _, err := idp.NewSigner(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewSigner(%s) = %v, want error mentioning %q", tt.name, err, tt.want)
		}
	}
}

func TestParsePEMKeyErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "no PRIVATE KEY"},
		{"only a certificate", string(pemBytes("CERTIFICATE", testKeys(t).rsaCert.Raw)), "no PRIVATE KEY"},
		{"encrypted PKCS#8", string(pemBytes("ENCRYPTED PRIVATE KEY", []byte{1, 2})), "encrypted"},
		{"garbage in block", string(pemBytes("PRIVATE KEY", []byte("nope"))), "PRIVATE KEY block"},
	}
	for _, tt := range tests {
		if _, err := idp.ParsePEMKey([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePEMKey(%s) = %v, want error mentioning %q", tt.name, err, tt.want)
		}
	}
}

// TestAssertionGolden pins the header and claims of a client assertion,
// with the values that change per run replaced by what they must equal.
func TestAssertionGolden(t *testing.T) {
	k := testKeys(t)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		cfg    idp.SignerConfig
		golden string
	}{
		{"ps256-x5t-s256", idp.SignerConfig{Key: k.rsa, Certificate: k.rsaCert, Algorithm: "PS256", Thumbprint: idp.ThumbprintSHA256}, "assertion_ps256_x5t_s256.golden"},
		{"rs256-x5t", idp.SignerConfig{Key: k.rsa, Certificate: k.rsaCert, Thumbprint: idp.ThumbprintSHA1}, "assertion_rs256_x5t.golden"},
		{"es256", idp.SignerConfig{Key: k.ec}, "assertion_es256.golden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer, err := idp.NewSigner(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			a, err := signer.Assertion("my-client", "https://login.example.com/oauth2/v2.0/token", now)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(a, ".")
			if len(parts) != 3 {
				t.Fatalf("assertion has %d parts, want 3", len(parts))
			}
			var header, claims map[string]any
			decodeSegment(t, parts[0], &header)
			decodeSegment(t, parts[1], &claims)
			// Normalize what differs per run, after checking it.
			if jti, _ := claims["jti"].(string); len(jti) != 32 {
				t.Errorf("jti = %q, want 32 hex characters", jti)
			}
			claims["jti"] = "<32 hex>"
			for _, h := range []string{"x5t", "x5t#S256"} {
				if v, ok := header[h]; ok {
					if want := idp.Thumbprint(tc.cfg.Certificate, h); v != want {
						t.Errorf("header %s = %v, want %s", h, v, want)
					}
					header[h] = "<thumbprint of certificate>"
				}
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			enc.Encode(map[string]any{"header": header, "claims": claims})
			got := buf.Bytes()
			path := filepath.Join("testdata", tc.golden)
			if *update {
				os.WriteFile(path, got, 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if string(got) != string(want) {
				t.Errorf("assertion differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
			}
			// And the signature verifies with the public key.
			if _, err := jwt.Parse(a, func(*jwt.Token) (any, error) { return tc.cfg.Key.Public(), nil },
				jwt.WithTimeFunc(func() time.Time { return now })); err != nil {
				t.Errorf("assertion signature does not verify: %v", err)
			}
		})
	}
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("segment not base64url: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("segment not JSON: %v", err)
	}
}

func httpPostForm(u string, fields map[string]string) (int, error) {
	form := url.Values{}
	for k, v := range fields {
		form.Set(k, v)
	}
	resp, err := http.PostForm(u, form)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
