package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"software.sslmate.com/src/go-pkcs12"
)

var (
	tomlBlock = regexp.MustCompile("(?s)```toml\n(.*?)```")
	envRef    = regexp.MustCompile(`"env:([A-Za-z_][A-Za-z0-9_]*)"`)
	fileRef   = regexp.MustCompile(`"file:([^"/]+)"`)
)

// TestProviderSnippets: every configuration snippet in docs/providers.md
// passes check-config, with its env: variables set and its file:
// references present (generated keys and certificates).
func TestProviderSnippets(t *testing.T) {
	doc, err := os.ReadFile("../../docs/providers.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := tomlBlock.FindAllSubmatch(doc, -1)
	if len(blocks) < 9 {
		t.Fatalf("docs/providers.md has %d toml snippets, want one per provider and variant (9)", len(blocks))
	}
	const dummy = "dummy-secret-value"
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := idptest.SelfSigned(key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)

	for i, b := range blocks {
		snippet := string(b[1])
		name := regexp.MustCompile(`\[profiles\.([^\]]+)\]`).FindStringSubmatch(snippet)
		if name == nil {
			t.Fatalf("snippet %d has no profile", i)
		}
		t.Run(name[1], func(t *testing.T) {
			dir := t.TempDir()
			for _, m := range envRef.FindAllStringSubmatch(snippet, -1) {
				t.Setenv(m[1], dummy)
			}
			for _, m := range fileRef.FindAllStringSubmatch(snippet, -1) {
				var data []byte
				switch {
				case strings.HasSuffix(m[1], ".p12"):
					data, _ = pkcs12.Modern2023.Encode(key, cert, nil, dummy)
				case strings.HasSuffix(m[1], ".json"): // a service-account key
					data = idptest.ServiceAccountKey("docs@example.iam.gserviceaccount.com", "https://oauth2.googleapis.com/token")
				case strings.HasSuffix(m[1], "-token"): // a platform's token (client_assertion)
					now := time.Now()
					data = []byte(idptest.NewPlatform().Mint("https://platform.example", "system:serviceaccount:docs:agent", "api://AzureADTokenExchange", now, now.Add(time.Hour)))
				case strings.Contains(m[1], "cert"):
					data = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
				default:
					data = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
				}
				os.WriteFile(filepath.Join(dir, m[1]), data, 0o600)
			}
			path := filepath.Join(dir, "agent.toml")
			// Kept in dir: check-config judges the store's and socket's
			// directories as start would, and the host's defaults are not
			// this test's business.
			os.WriteFile(path, []byte("store = \"memory\"\n"+snippet), 0o600)
			stdout, stderr, code := runCLI("check-config", path, "--socket", filepath.Join(dir, "agent.sock"))
			if code != 0 || !strings.Contains(stdout, "ok, 1 profile(s): "+name[1]) {
				t.Errorf("check-config on the %s snippet: exit %d\n%s%s\n%s", name[1], code, stdout, stderr, snippet)
			}
		})
	}
}
