package agent_test

import (
	"context"
	"path/filepath"
	"testing"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
)

func TestConfigFromEnvWorks(t *testing.T) {
	srv := idptest.New()
	defer srv.Close()
	suiteLog.server(srv)
	keys := makePKI(t)
	p12, _ := pkcs12.Modern2023.Encode(keys.rsa, keys.rsaCert, nil, "ks-pass")
	ksPath := writeFile(t, filepath.Join(t.TempDir(), "keystore.p12"), p12, 0o600)
	srv.AddClient(idptest.Client{ID: "secret-client", Secret: "zeebe-secret", Method: "client_secret_post", Scopes: []string{"zeebe"}})
	srv.AddClient(idptest.Client{ID: "cert-client", Method: "private_key_jwt", PublicKey: keys.rsa.Public()})
	suiteLog.secret("zeebe-secret", "ks-pass")
	tests := map[string]map[string]string{
		"secret": {"ZEEBE_CLIENT_ID": "secret-client", "ZEEBE_CLIENT_SECRET": "zeebe-secret", "ZEEBE_AUTHORIZATION_SERVER_URL": srv.TokenURL,
			"ZEEBE_TOKEN_AUDIENCE": "zeebe-api", "ZEEBE_TOKEN_SCOPE": "zeebe"},
		"keystore": {"ZEEBE_CLIENT_ID": "cert-client", "ZEEBE_AUTHORIZATION_SERVER_URL": srv.TokenURL, "ZEEBE_TOKEN_AUDIENCE": "zeebe-api",
			"CAMUNDA_CLIENT_AUTH_CLIENT_ASSERTION_KEYSTORE_PATH": ksPath, "CAMUNDA_CLIENT_AUTH_CLIENT_ASSERTION_KEYSTORE_PASSWORD": "ks-pass"},
	}
	for name, env := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			cfg, err := config.ConfigFromEnv(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if cfg.StorePath() != "" {
				t.Errorf("store = %q without ZEEBE_TOKEN_CACHE_DIR, want memory", cfg.StorePath())
			}
			a, err := agent.New(cfg, agent.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			tok, err := a.Token(context.Background(), self, config.ZeebeProfile, 0)
			suiteLog.err(t, err)
			if err != nil {
				t.Fatal(err)
			}
			claims, err := srv.VerifyToken(tok.AccessToken)
			if err != nil || claims["client_id"] != env["ZEEBE_CLIENT_ID"] || !audHas(claims["aud"], "zeebe-api") {
				t.Errorf("token claims = %v, %v", claims, err)
			}
		})
	}
}

// audHas reports whether a JWT aud claim (a string or a list) holds want.
func audHas(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return v == want
	case []any:
		for _, x := range v {
			if x == want {
				return true
			}
		}
	}
	return false
}
