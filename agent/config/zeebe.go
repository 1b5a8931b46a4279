package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/tokenagent/tokenagent/agent/idp/spec"
)

// Zeebe/Camunda client environment variables (zeebe-node, the Camunda
// Java/Spring clients), read when no configuration file exists.
const (
	EnvZeebeClientID         = "ZEEBE_CLIENT_ID"
	EnvZeebeClientSecret     = "ZEEBE_CLIENT_SECRET"
	EnvZeebeAuthServerURL    = "ZEEBE_AUTHORIZATION_SERVER_URL"
	EnvZeebeTokenAudience    = "ZEEBE_TOKEN_AUDIENCE"
	EnvZeebeTokenScope       = "ZEEBE_TOKEN_SCOPE"
	EnvZeebeTokenCacheDir    = "ZEEBE_TOKEN_CACHE_DIR"
	EnvCamundaKeystorePath   = "CAMUNDA_CLIENT_AUTH_CLIENT_ASSERTION_KEYSTORE_PATH"
	EnvCamundaKeystorePasswd = "CAMUNDA_CLIENT_AUTH_CLIENT_ASSERTION_KEYSTORE_PASSWORD"
)

// ZeebeProfile is the profile ConfigFromEnv defines.
const ZeebeProfile = "zeebe"

// HasZeebeEnv reports whether any Zeebe/Camunda client variable is set.
func HasZeebeEnv(getenv func(string) string) bool {
	for _, name := range []string{EnvZeebeClientID, EnvZeebeAuthServerURL, EnvZeebeClientSecret, EnvCamundaKeystorePath} {
		if getenv(name) != "" {
			return true
		}
	}
	return false
}

// ConfigFromEnv builds a configuration with one profile, "zeebe", from the
// Zeebe/Camunda client environment variables:
//
//	ZEEBE_CLIENT_ID, ZEEBE_AUTHORIZATION_SERVER_URL (the token endpoint): required
//	ZEEBE_CLIENT_SECRET (client_secret_post, as the Zeebe clients send it), or
//	CAMUNDA_CLIENT_AUTH_CLIENT_ASSERTION_KEYSTORE_PATH and _PASSWORD
//	  (private_key_jwt from a PKCS#12 keystore, with an x5t#S256 header)
//	ZEEBE_TOKEN_AUDIENCE, ZEEBE_TOKEN_SCOPE (space-separated): optional
//	ZEEBE_TOKEN_CACHE_DIR: keep tokens encrypted in DIR/tokens.db;
//	  without it tokens are kept in memory only
//
// Secrets stay in the environment: the profile refers to them (env:NAME).
func ConfigFromEnv(getenv func(string) string) (*Config, error) {
	var missing []string
	for _, name := range []string{EnvZeebeClientID, EnvZeebeAuthServerURL} {
		if getenv(name) == "" {
			missing = append(missing, name)
		}
	}
	secret, keystore := getenv(EnvZeebeClientSecret), getenv(EnvCamundaKeystorePath)
	if secret == "" && keystore == "" {
		missing = append(missing, EnvZeebeClientSecret+" (or "+EnvCamundaKeystorePath+")")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("zeebe environment: missing %s; set them, or use a configuration file (--config)", strings.Join(missing, ", "))
	}
	p := &ProfileConfig{
		TokenURL: getenv(EnvZeebeAuthServerURL),
		ClientID: getenv(EnvZeebeClientID),
		Audience: getenv(EnvZeebeTokenAudience),
		Scopes:   strings.Fields(getenv(EnvZeebeTokenScope)),
	}
	if keystore != "" {
		path, err := filepath.Abs(keystore)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvCamundaKeystorePath, err)
		}
		p.Auth = spec.AuthPrivateKeyJWT
		p.PKCS12 = RefFile + path
		p.AssertionX5t = spec.ThumbprintSHA256
		if getenv(EnvCamundaKeystorePasswd) != "" {
			p.PKCS12Password = RefEnv + EnvCamundaKeystorePasswd
		}
	} else {
		p.Auth = spec.AuthClientSecretPost
		p.ClientSecret = RefEnv + EnvZeebeClientSecret
	}
	cfg := &Config{
		Profiles: map[string]*ProfileConfig{ZeebeProfile: p},
		Store:    StoreMemory,
		path:     "(Zeebe environment variables)",
	}
	if dir := getenv(EnvZeebeTokenCacheDir); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvZeebeTokenCacheDir, err)
		}
		cfg.Store = filepath.Join(abs, "tokens.db")
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("zeebe environment: %w", err)
	}
	return cfg, nil
}
