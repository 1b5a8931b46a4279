package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
)

type pki struct {
	rsa     *rsa.PrivateKey
	rsaCert *x509.Certificate
	ec      *ecdsa.PrivateKey
}

func makePKI(t *testing.T) pki {
	t.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := idptest.SelfSigned(r)
	if err != nil {
		t.Fatal(err)
	}
	return pki{rsa: r, rsaCert: cert, ec: e}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

// TestAuthMethodsFromConfig wires every auth method and secret reference
// from a real config file on disk to a token from idptest.
func TestAuthMethodsFromConfig(t *testing.T) {
	dir := t.TempDir()
	keys := makePKI(t)
	srv := idptest.New()
	defer srv.Close()
	suiteLog.server(srv)

	const p12Password = "p12-Pa55word!"
	const fileSecret = "file-secret-9f8e7d"
	const credSecret = "credential-secret-1a2b3c"
	suiteLog.secret(testSecret, p12Password, fileSecret, credSecret)

	rsaPKCS8, _ := x509.MarshalPKCS8PrivateKey(keys.rsa)
	ecSEC1, _ := x509.MarshalECPrivateKey(keys.ec)
	p12, err := pkcs12.Modern2023.Encode(keys.rsa, keys.rsaCert, nil, p12Password)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "rsa.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaPKCS8}), 0o600)
	writeFile(t, filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: keys.rsaCert.Raw}), 0o644)
	writeFile(t, filepath.Join(dir, "ec.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecSEC1}), 0o600)
	writeFile(t, filepath.Join(dir, "entra.p12"), p12, 0o640)
	writeFile(t, filepath.Join(dir, "secret.txt"), []byte(fileSecret+"\n"), 0o600)
	credDir := t.TempDir()
	writeFile(t, filepath.Join(credDir, "idp-secret"), []byte(credSecret), 0o400)
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	t.Setenv("TEST_BASIC_SECRET", testSecret)
	t.Setenv("TEST_P12_PASSWORD", p12Password)
	t.Setenv("TEST_P12_B64", base64.StdEncoding.EncodeToString(p12))

	srv.AddClient(idptest.Client{ID: "basic", Secret: testSecret, Method: "client_secret_basic"})
	srv.AddClient(idptest.Client{ID: "post-file", Secret: fileSecret, Method: "client_secret_post"})
	srv.AddClient(idptest.Client{ID: "post-cred", Secret: credSecret, Method: "client_secret_post"})
	srv.AddClient(idptest.Client{ID: "rsa-pem", Method: "private_key_jwt", PublicKey: keys.rsa.Public()})
	srv.AddClient(idptest.Client{ID: "ec-pem", Method: "private_key_jwt", PublicKey: keys.ec.Public()})
	srv.AddClient(idptest.Client{ID: "p12", Method: "private_key_jwt", PublicKey: keys.rsa.Public()})
	srv.AddClient(idptest.Client{ID: "p12-env", Method: "private_key_jwt", PublicKey: keys.rsa.Public()})

	config := fmt.Sprintf(`
[profiles.basic]
token_url = %[1]q
client_id = "basic"
client_secret = "env:TEST_BASIC_SECRET"

[profiles.post-file]
issuer = %[2]q
client_id = "post-file"
client_secret = "file:secret.txt"
auth = "client_secret_post"

[profiles.post-cred]
token_url = %[1]q
client_id = "post-cred"
client_secret = "systemd-credential:idp-secret"
auth = "client_secret_post"

[profiles.rsa-pem]
token_url = %[1]q
client_id = "rsa-pem"
private_key = "file:rsa.pem"
certificate = "file:cert.pem"
assertion_alg = "PS256"
assertion_x5t = "x5t#S256"

[profiles.ec-pem]
token_url = %[1]q
client_id = "ec-pem"
private_key = "file:%[3]s"

[profiles.p12]
token_url = %[1]q
client_id = "p12"
pkcs12 = "file:entra.p12"
pkcs12_password = "env:TEST_P12_PASSWORD"
assertion_x5t = "x5t"

[profiles.p12-env]
token_url = %[1]q
client_id = "p12-env"
pkcs12 = "env:TEST_P12_B64"
pkcs12_password = "env:TEST_P12_PASSWORD"
`, srv.TokenURL, srv.URL, filepath.Join(dir, "ec.pem"))
	path := writeFile(t, filepath.Join(dir, "agent.toml"), []byte(config), 0o644)
	cfg, err := secretref.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	defer a.Close()
	for _, name := range []string{"basic", "post-file", "post-cred", "rsa-pem", "ec-pem", "p12", "p12-env"} {
		tok, err := a.Token(context.Background(), self, name, 0)
		suiteLog.err(t, err)
		if err != nil {
			t.Errorf("Token(%q): %v", name, err)
			continue
		}
		claims, err := srv.VerifyToken(tok.AccessToken)
		if err != nil || claims["client_id"] != name {
			t.Errorf("Token(%q) claims = %v, %v; want client_id %q", name, claims, err, name)
		}
	}
}

func TestKeyAndSecretErrors(t *testing.T) {
	dir := t.TempDir()
	keys := makePKI(t)
	const password = "Right-Pa55"
	const wrong = "Wr0ng-Pa55"
	suiteLog.secret(password, wrong)
	p12, _ := pkcs12.Modern2023.Encode(keys.rsa, keys.rsaCert, nil, password)
	p12Path := writeFile(t, filepath.Join(dir, "bundle.p12"), p12, 0o600)
	writeFile(t, filepath.Join(dir, "open.txt"), []byte("world-readable-secret"), 0o644)
	suiteLog.secret("world-readable-secret")
	t.Setenv("WRONG_PASSWORD", wrong)
	t.Setenv("CREDENTIALS_DIRECTORY", "")

	const head = "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\n"
	tests := []struct {
		name, toml string
		want       []string
	}{
		{"wrong PKCS#12 password", head + "pkcs12 = \"file:" + p12Path + "\"\npkcs12_password = \"env:WRONG_PASSWORD\"\n",
			[]string{`profile "p"`, "pkcs12", p12Path, "wrong PKCS#12 password"}},
		{"missing env var", head + "client_secret = \"env:NO_SUCH_VAR_X\"\n", []string{`profile "p"`, "client_secret", "NO_SUCH_VAR_X", "not set"}},
		{"world-readable secret file", head + "client_secret = \"file:" + filepath.Join(dir, "open.txt") + "\"\n", []string{`profile "p"`, "open.txt", "0644", "chmod"}},
		{"missing key file", head + "private_key = \"file:" + filepath.Join(dir, "nope.pem") + "\"\n", []string{`profile "p"`, "private_key", "nope.pem", "no such file"}},
		{"credential without systemd", head + "client_secret = \"systemd-credential:idp\"\n", []string{`profile "p"`, "CREDENTIALS_DIRECTORY", "LoadCredential"}},
		{"key path without prefix", head + "private_key = \"/etc/key.pem\"\n", []string{`profile "p"`, "private_key", "file:PATH"}},
		{"not a key", head + "private_key = \"file:" + filepath.Join(dir, "bundle.p12") + "\"\n", []string{`profile "p"`, "private_key", "no PRIVATE KEY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.ParseConfig([]byte(tt.toml), filepath.Join(dir, "agent.toml"))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			_, err = agent.New(cfg, agent.Options{})
			suiteLog.err(t, err)
			if err == nil {
				t.Fatal("agent.New() = nil error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("agent.New() error %q does not mention %q", err, w)
				}
			}
			for _, secret := range []string{password, wrong, "world-readable-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("agent.New() error contains a secret: %q", err)
				}
			}
		})
	}
}

// TestParsingHasNoSideEffects: parsing looks up no users or groups and
// creates no files; the names are resolved — and a typo refused, naming
// the profile and key — when the agent is built.
func TestParsingHasNoSideEffects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.toml")
	cfg, err := config.ParseConfig([]byte(`socket_group = "no-such-group-x"
[profiles.p]
token_url = "https://idp.example/token"
client_id = "c"
client_secret = "env:NOT_READ_AT_PARSE"
allow_users = ["no-such-user-x"]
allow_groups = ["no-such-group-x"]
`), path)
	if err != nil {
		t.Fatalf("ParseConfig with unknown user and group names = %v; want them left for start-up", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("ParseConfig created %d files in the config's directory", len(entries))
	}
	t.Setenv("NOT_READ_AT_PARSE", "x")
	_, err = agent.New(cfg, agent.Options{})
	for _, want := range []string{`profile "p"`, `allow_users: no user "no-such-user-x"`, `allow_groups: no group "no-such-group-x"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("agent.New = %v, want it to name %s", err, want)
		}
	}
}

// TestHideEnvSecrets: env: secrets leave the process environment once
// read, and a reload still finds them.
func TestHideEnvSecrets(t *testing.T) {
	srv := idptest.New()
	defer srv.Close()
	srv.AddClient(idptest.Client{ID: "c", Secret: "env-secret-value", Method: "client_secret_basic"})
	suiteLog.secret("env-secret-value")
	t.Setenv("TEST_HIDDEN_SECRET", "env-secret-value")
	toml := []byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"env:TEST_HIDDEN_SECRET\"\n", srv.TokenURL))
	cfg, err := config.ParseConfig(toml, "env.toml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if moved := secretref.HideEnvSecrets(cfg); len(moved) != 1 || moved[0] != "TEST_HIDDEN_SECRET" {
		t.Errorf("HideEnvSecrets() = %v", moved)
	}
	if _, set := os.LookupEnv("TEST_HIDDEN_SECRET"); set {
		t.Error("the secret is still in the process environment")
	}
	for _, kv := range os.Environ() {
		if strings.Contains(kv, "env-secret-value") {
			t.Error("the secret is still in os.Environ")
		}
	}
	next, _ := config.ParseConfig(append(toml, []byte("scopes = [\"x\"]\n")...), "env.toml")
	if _, err := a.Reload(next); err != nil {
		t.Errorf("reload after the secret left the environment: %v", err)
	}
	if _, err := a.Token(context.Background(), self, "p", 0); err != nil {
		t.Errorf("Token after reload: %v", err)
	}
}

// TestEnvSecretEmptyIsNotUnset: an env: reference to a variable that is
// set but empty says so, not that it is missing (a different fix).
func TestEnvSecretEmptyIsNotUnset(t *testing.T) {
	t.Setenv("TOKENAGENT_TEST_EMPTY_SECRET", "")
	for _, tc := range []struct{ ref, want string }{
		{"env:TOKENAGENT_TEST_EMPTY_SECRET", "TOKENAGENT_TEST_EMPTY_SECRET is set but empty"},
		{"env:TOKENAGENT_TEST_NEVER_SET", "TOKENAGENT_TEST_NEVER_SET is not set"},
	} {
		cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = %q\n", tc.ref)), "env.toml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agent.New(cfg, agent.Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("client_secret = %q: %v, want %q", tc.ref, err, tc.want)
		}
	}
}
