package secretref_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/secretref"
)

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

func TestLiteralSecretNeedsPrivateFile(t *testing.T) {
	dir := t.TempDir()
	const literal = "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"literal-Secret-123\"\n"
	shared := writeFile(t, filepath.Join(dir, "shared.toml"), []byte(literal), 0o644)
	_, err := secretref.LoadConfig(shared)
	if err != nil && strings.Contains(err.Error(), "literal-Secret-123") {
		t.Errorf("LoadConfig error repeats the secret: %v", err)
	}
	if err == nil || !strings.Contains(err.Error(), "literal secret") || !strings.Contains(err.Error(), "client_secret") {
		t.Errorf("LoadConfig(0644 file with literal secret) = %v, want refusal naming client_secret", err)
	}
	private := writeFile(t, filepath.Join(dir, "private.toml"), []byte(literal), 0o600)
	if _, err := secretref.LoadConfig(private); err != nil {
		t.Errorf("LoadConfig(0600 file with literal secret) = %v, want ok", err)
	}
	ref := writeFile(t, filepath.Join(dir, "ref.toml"), []byte(strings.Replace(literal, "literal-Secret-123", "env:X", 1)), 0o644)
	if _, err := secretref.LoadConfig(ref); err != nil {
		t.Errorf("LoadConfig(0644 file with env: reference) = %v, want ok", err)
	}
}

// TestConfigOthersCanChangeRefused: a configuration file that another
// user could change is refused at load (start, reload, check-config).
func TestConfigOthersCanChangeRefused(t *testing.T) {
	body := []byte("[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:X\"\n")
	dir := t.TempDir()
	writable := filepath.Join(dir, "writable.toml")
	os.WriteFile(writable, body, 0o600)
	os.Chmod(writable, 0o666)
	if _, err := secretref.LoadConfig(writable); err == nil || !strings.Contains(err.Error(), writable) || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("LoadConfig(mode 0666) = %v, want a refusal naming the file and what to do", err)
	}
	if os.Geteuid() == 0 {
		owned := filepath.Join(dir, "owned.toml")
		os.WriteFile(owned, body, 0o644)
		os.Chown(owned, 1, 1) // another real user (daemon)
		if _, err := secretref.LoadConfig(owned); err == nil || !strings.Contains(err.Error(), "owned by uid 1") {
			t.Errorf("LoadConfig(owned by uid 1) = %v, want a refusal naming the owner", err)
		}
	}
	ok := filepath.Join(dir, "ok.toml")
	os.WriteFile(ok, body, 0o644) // readable by others is fine without literal secrets
	if _, err := secretref.LoadConfig(ok); err != nil {
		t.Errorf("LoadConfig(mode 0644, own) = %v", err)
	}
}
