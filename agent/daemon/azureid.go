package daemon

// The Azure managed-identity door's secret: made once, kept beside the
// local CA's key, so that a restart does not break the environment its
// callers were given.

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/store"
)

// azureIdentityHeader is the X-IDENTITY-HEADER secret of
// azure_identity_endpoint: 32 random bytes (base64url), made on first use
// in azure-identity-header (0600) in the store's directory (the
// configuration's with store = "memory"), and read from there after. It
// says only that a caller was told the agent's environment; callers are
// identified by the kernel.
func (d *Daemon) azureIdentityHeader(cfg *config.Config) (string, error) {
	caKey, _ := cfg.LocalCA()
	path := filepath.Join(filepath.Dir(caKey), "azure-identity-header")
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("config %s: azure_identity_endpoint: %w", cfg.Path(), err)
	}
	if _, err := os.Stat(path); os.IsNotExist(err) {
		raw := make([]byte, 32)
		rand.Read(raw)
		secret := base64.RawURLEncoding.EncodeToString(raw)
		created, err := store.CreatePrivateFile(path, []byte(secret+"\n"), "Azure identity header secret",
			"make its directory the agent's, or remove azure_identity_endpoint")
		if err != nil {
			return fail(err)
		}
		if created {
			d.log.Info().Str("file", path).Msg("made the Azure identity endpoint's header secret (tokenagent env --for azure hands it to allowed users)")
		}
	}
	data, err := secretref.Read(config.RefFile+path, "", secretref.Secret)
	if err != nil {
		return fail(fmt.Errorf("Azure identity header secret: %w", err))
	}
	secret := string(secretref.TrimNewline(data))
	if len(secret) < 32 {
		return fail(fmt.Errorf("Azure identity header secret %s is shorter than 32 characters; remove it and restart to make a new one (callers must then run tokenagent env --for azure again)", path))
	}
	return secret, nil
}
