package config_test

import (
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/config"
)

// TestServiceAccountProfile: a profile with a service-account key needs no
// client_id or token_url (the key has them), and is jwt_bearer by default.
func TestServiceAccountProfile(t *testing.T) {
	cfg, err := config.ParseConfig([]byte(`[profiles.gcp]
credentials = "file:sa.json"
scopes = ["https://www.googleapis.com/auth/cloud-platform"]
gcp_metadata = "127.0.0.1:8733"
gcp_project = "my-project-1"
`), "gcp.toml")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Profiles["gcp"]; p.AuthMethod() != "jwt_bearer" || p.GCPMetadata != "127.0.0.1:8733" {
		t.Errorf("profile = %+v (auth %s), want jwt_bearer with its metadata address", p, p.AuthMethod())
	}
}

// TestGCPConfigErrors: each mistake is named with its profile and key.
func TestGCPConfigErrors(t *testing.T) {
	const sa = "credentials = \"file:sa.json\"\n"
	for _, tc := range []struct {
		name, toml string
		want       []string
	}{
		{"jwt_bearer without key", "[profiles.p]\nauth = \"jwt_bearer\"\n", []string{`profile "p"`, "credentials", "file:sa.json"}},
		{"literal key", "[profiles.p]\ncredentials = \"{\\\"private_key\\\": 1}\"\n", []string{`profile "p"`, "credentials", "never the key itself"}},
		{"key with a secret", "[profiles.p]\n" + sa + "client_secret = \"env:S\"\n", []string{`profile "p"`, "client_secret", "jwt_bearer"}},
		{"key with another auth", "[profiles.p]\n" + sa + "auth = \"private_key_jwt\"\nprivate_key = \"file:k.pem\"\nclient_id = \"c\"\ntoken_url = \"https://t.example/t\"\n", []string{`profile "p"`, "credentials", "jwt_bearer"}},
		{"metadata not loopback", "[profiles.p]\n" + sa + "gcp_metadata = \"0.0.0.0:8733\"\n", []string{`profile "p"`, "gcp_metadata", "loopback"}},
		{"metadata a name", "[profiles.p]\n" + sa + "gcp_metadata = \"metadata.google.internal:80\"\n", []string{`profile "p"`, "gcp_metadata"}},
		{"project without metadata", "[profiles.p]\n" + sa + "gcp_project = \"my-project\"\n", []string{`profile "p"`, "gcp_project", "gcp_metadata"}},
		{"bad project", "[profiles.p]\n" + sa + "gcp_metadata = \"127.0.0.1:8733\"\ngcp_project = \"My Project\"\n", []string{`profile "p"`, "gcp_project", "lowercase"}},
		{"two profiles on one port", "[profiles.a]\n" + sa + "gcp_metadata = \"127.0.0.1:8733\"\n[profiles.b]\n" + sa + "gcp_metadata = \"127.0.0.1:8733\"\n",
			[]string{`profile "b"`, "gcp_metadata 127.0.0.1:8733", `profile "a"`, "a port of its own"}},
		{"the token endpoint's port", "token_endpoint = \"127.0.0.1:8731\"\n[profiles.a]\n" + sa + "gcp_metadata = \"127.0.0.1:8731\"\n",
			[]string{`profile "a"`, "token_endpoint", "a port of its own"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.ParseConfig([]byte(tc.toml), "test.toml")
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("ParseConfig() = %v, want an error mentioning %q", err, w)
				}
			}
		})
	}
}
