package daemon

// The local CA of token_endpoint_https: its key made once and kept, what
// callers trust published beside the socket (or at local_ca_cert).

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/secretref"
	filesink "github.com/tokenagent/tokenagent/agent/sink"
	"github.com/tokenagent/tokenagent/ipc/localca"
	"github.com/tokenagent/tokenagent/store"
)

// TrustStorePassword is the password of ca.p12, the Java trust store the
// agent publishes: it guards nothing (the store holds certificates, all
// public); Java's tools expect one, and "changeit" is theirs.
const TrustStorePassword = "changeit"

// systemBundles are where the host's CA certificates are, by family:
// Debian and Ubuntu, Fedora and RHEL, openSUSE, Alpine and macOS.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// trustFiles are the files the agent publishes for callers of its HTTPS
// doors, beside one another.
type trustFiles struct {
	cert   string // the local CA's certificate (local_ca_cert; NODE_EXTRA_CA_CERTS)
	bundle string // the host's CAs and it (REQUESTS_CA_BUNDLE, SSL_CERT_FILE)
	p12    string // the same as a Java trust store (javax.net.ssl.trustStore)
}

func trustFilesAt(cert string) trustFiles {
	dir := filepath.Dir(cert)
	return trustFiles{cert: cert, bundle: filepath.Join(dir, "ca-bundle.pem"), p12: filepath.Join(dir, "ca.p12")}
}

// openLocalCA makes the local CA's key on first use (local-ca.key, 0600,
// in the store's directory), opens the CA and publishes its certificate,
// the bundle and the trust store, all mode 0644, where callers read them:
// local_ca_cert, else beside the socket, whose directory admits exactly
// the socket's audience.
func (d *Daemon) openLocalCA(cfg *config.Config) (*localca.CA, trustFiles, error) {
	keyPath, certPath := cfg.LocalCA()
	if certPath == "" {
		certPath = filepath.Join(filepath.Dir(d.opts.Socket), "ca.pem")
	}
	files := trustFilesAt(certPath)
	fail := func(err error) (*localca.CA, trustFiles, error) {
		return nil, files, fmt.Errorf("config %s: token_endpoint_https: %w", cfg.Path(), err)
	}
	if _, err := os.Stat(keyPath); os.IsNotExist(err) {
		key, err := localca.NewKey()
		if err != nil {
			return fail(err)
		}
		created, err := store.CreatePrivateFile(keyPath, key, "local CA key",
			"make its directory the agent's, or remove token_endpoint_https")
		if err != nil {
			return fail(err)
		}
		if created {
			d.log.Info().Str("key", keyPath).Msg("made the local CA's key for token_endpoint_https (it never leaves this host)")
		}
	}
	keyPEM, err := secretref.Read(config.RefFile+keyPath, "", secretref.Secret)
	if err != nil {
		return fail(fmt.Errorf("local CA key: %w", err))
	}
	published, _ := os.ReadFile(certPath) // kept when it is this key's and not near its end
	host, _ := os.Hostname()
	ca, err := localca.New(keyPEM, published, host, nil)
	if err != nil {
		return fail(fmt.Errorf("local CA key %s: %w; remove it and restart to make a new one (callers must then trust the new %s)", keyPath, err, certPath))
	}
	bundle, p12, err := trustStores(ca.Cert())
	if err != nil {
		return fail(err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{files.cert, ca.CertPEM()}, {files.bundle, bundle}, {files.p12, p12}} {
		if err := (filesink.File{Path: f.path, Mode: 0o644, UID: -1, GID: -1}).Put(f.data); err != nil {
			return fail(fmt.Errorf("publishing what callers trust: %w; set local_ca_cert to a path in a directory of the agent's", err))
		}
	}
	return ca, files, nil
}

// trustStores are the host's CA certificates with the local CA's added:
// as one PEM bundle, and as a PKCS #12 trust store for Java.
func trustStores(local *x509.Certificate) (bundle, p12 []byte, err error) {
	var system []byte
	for _, path := range systemBundles {
		if system, err = os.ReadFile(path); err == nil {
			break
		}
	}
	certs := []*x509.Certificate{local}
	for rest := system; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil && block.Type == "CERTIFICATE" {
			certs = append(certs, c)
			bundle = append(bundle, pem.EncodeToMemory(block)...)
		}
	}
	bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: local.Raw})...)
	p12, err = pkcs12.Modern2023.WithRand(rand.Reader).EncodeTrustStore(certs, TrustStorePassword)
	if err != nil {
		return nil, nil, fmt.Errorf("making the Java trust store: %w", err)
	}
	return bundle, p12, nil
}
