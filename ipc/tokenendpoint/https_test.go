package tokenendpoint_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
)

// TestHTTPSEndpoint: token_endpoint_https serves the same endpoint over
// TLS with a certificate of the agent's local CA. A client that trusts
// the published ca.pem (and nothing else) gets the agent's token, the
// caller identified under TLS as on the plain endpoint; one that trusts
// only the system's CAs is refused at the handshake. The CA's key stays
// private; what callers trust is published readable, as PEM, as a bundle
// with the host's CAs and as a Java trust store.
func TestHTTPSEndpoint(t *testing.T) {
	r2, err := agenttest.Start(`token_endpoint_https = "127.0.0.1:0"
[profiles.zeebe]
token_url = "IDP"
client_id = "c"
client_secret = "` + idpSecret + `"
`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r2.Close)
	r2.IdP.AddClient(idptest.Client{ID: "c", Secret: idpSecret, Method: "client_secret_basic"})
	c := &clientlib.Client{Socket: r2.Socket}
	defer c.Close()
	h, err := c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.TokenEndpointHTTPS, "https://127.0.0.1:") || h.LocalCA == nil {
		t.Fatalf("health: token_endpoint_https %q, local_ca %+v", h.TokenEndpointHTTPS, h.LocalCA)
	}
	for _, f := range []string{h.LocalCA.Cert, h.LocalCA.Bundle, h.LocalCA.TrustStore} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v; want a file every caller can read (0644)", f, fi, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(r2.Dir, "local-ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the local CA's key: %v %v; want it beside the configuration (store = memory), 0600", fi, err)
	}
	caPEM, err := os.ReadFile(h.LocalCA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", h.LocalCA.Cert)
	}
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, trusting)
	cfg := clientcredentials.Config{ClientID: "zeebe", ClientSecret: "unused", TokenURL: h.TokenEndpointHTTPS}
	tok, err := cfg.Token(ctx)
	if err != nil {
		t.Fatalf("x/oauth2 over https, trusting ca.pem: %v", err)
	}
	if _, err := r2.IdP.VerifyToken(tok.AccessToken); err != nil {
		t.Errorf("the token over https is not the IdP's: %v", err)
	}
	localhost := strings.Replace(h.TokenEndpointHTTPS, "127.0.0.1", "localhost", 1)
	if tok2, err := (&clientcredentials.Config{ClientID: "zeebe", ClientSecret: "unused", TokenURL: localhost}).Token(ctx); err != nil || tok2.AccessToken != tok.AccessToken {
		t.Errorf("as localhost: %v", err)
	}
	resp, err := trusting.Get(strings.TrimSuffix(h.TokenEndpointHTTPS, "/oauth2/token") + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if md.TokenEndpoint != h.TokenEndpointHTTPS || !strings.HasPrefix(md.Issuer, "https://") {
		t.Errorf("metadata over https: %+v; want the https token endpoint %s", md, h.TokenEndpointHTTPS)
	}
	_, err = http.Post(h.TokenEndpointHTTPS, "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials&client_id=zeebe"))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("a client trusting only the system's CAs: %v; want an unknown-authority error", err)
	}
	if n := r2.IdP.Requests("c"); n != 1 {
		t.Errorf("IdP requests = %d, want 1", n)
	}

	bundle, _ := os.ReadFile(h.LocalCA.Bundle)
	if !strings.Contains(string(bundle), strings.TrimSpace(string(caPEM))) || strings.Count(string(bundle), "BEGIN CERTIFICATE") < 2 {
		t.Errorf("%s: want the host's CAs and the local CA's", h.LocalCA.Bundle)
	}
	p12, _ := os.ReadFile(h.LocalCA.TrustStore)
	certs, err := pkcs12.DecodeTrustStore(p12, h.LocalCA.TrustStorePassword)
	found := false
	for _, c := range certs {
		found = found || c.Equal(mustParse(t, caPEM))
	}
	if err != nil || !found {
		t.Errorf("%s: %d certificates, %v; want the local CA among them", h.LocalCA.TrustStore, len(certs), err)
	}
}

func mustParse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
