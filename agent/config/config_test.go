package config_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/secretref"
)

func TestConfigErrors(t *testing.T) {
	const ok = "token_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:S\"\n"
	tests := []struct {
		name, toml string
		want       []string // all must appear in the error
	}{
		{"unknown profile key", "[profiles.p]\n" + ok + "clent_id = \"x\"\n", []string{"test.toml:5", `unknown key "clent_id"`, "[profiles.p]"}},
		{"unknown top-level key", "lg_level = \"info\"\n", []string{"test.toml:1", `"lg_level"`}},
		{"unknown table", "[profiles.p]\n" + ok + "[profiles.p.extra]\na = 1\n", []string{"test.toml:5", `"extra"`}},
		{"bad duration", "[profiles.p]\n" + ok + "min_valid = \"30 secs\"\n", []string{"test.toml:5", "min_valid", `"30 secs"`}},
		{"integer duration", "[profiles.p]\n" + ok + "min_valid = 30\n", []string{"min_valid"}},
		{"syntax error", "log_level = \"info\"\nlog_format = = 2\n", []string{"test.toml:2"}},
		{"missing client_id", "[profiles.zeebe]\ntoken_url = \"https://idp.example/token\"\nclient_secret = \"env:S\"\n", []string{`profile "zeebe"`, "client_id: missing"}},
		{"http to non-loopback", "[profiles.p]\ntoken_url = \"http://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:S\"\n", []string{`profile "p"`, "token_url", "http://", "https://"}},
		{"no endpoint", "[profiles.p]\nclient_id = \"c\"\nclient_secret = \"env:S\"\n", []string{`profile "p"`, "token_url: missing"}},
		{"both endpoints", "[profiles.p]\n" + ok + "issuer = \"https://idp.example\"\n", []string{`profile "p"`, "issuer", "not both"}},
		{"no secret", "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\n", []string{`profile "p"`, "client_secret: missing"}},
		{"jwt without key", "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nauth = \"private_key_jwt\"\n", []string{`profile "p"`, "private_key"}},
		{"bad alg", "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nprivate_key = \"file:k.pem\"\nassertion_alg = \"HS256\"\n", []string{`profile "p"`, "assertion_alg", "HS256"}},
		{"bad auth", "[profiles.p]\n" + ok + "auth = \"magic\"\n", []string{`profile "p"`, "auth", "magic"}},
		{"reserved param", "[profiles.p]\n" + ok + "params = { grant_type = \"password\" }\n", []string{`profile "p"`, "params", "grant_type"}},
		{"resource with fragment", "[profiles.p]\n" + ok + "resource = [\"https://api.example#x\"]\n", []string{`profile "p"`, "resource", "fragment"}},
		{"refresh_at out of range", "[profiles.p]\n" + ok + "refresh_at = 1.5\n", []string{`profile "p"`, "refresh_at"}},
		{"negative duration", "idle_after = \"-1m\"\n", []string{"idle_after", "negative"}},
		{"default_ttl over max_ttl", "[profiles.p]\n" + ok + "default_ttl = \"2h\"\nmax_ttl = \"1h\"\n", []string{`profile "p"`, "default_ttl", "max_ttl"}},
		{"bad profile name", "[profiles.\"a b\"]\n" + ok, []string{`profile "a b"`, "name"}},
		{"bad log level", "log_level = \"loud\"\n", []string{"log_level", "loud"}},
		{"memory_limit without unit sense", "memory_limit = \"64 mebibytes\"\n", []string{"test.toml:1", "memory_limit", `"64 mebibytes"`, "64MiB"}},
		{"token_endpoint_https not loopback", "token_endpoint_https = \"0.0.0.0:8732\"\n", []string{"token_endpoint_https", "loopback"}},
		{"token_endpoint_https on the plain port", "token_endpoint = \"127.0.0.1:8731\"\ntoken_endpoint_https = \"127.0.0.1:8731\"\n", []string{"token_endpoint_https", "a port of its own"}},
		{"local_ca_cert without https", "local_ca_cert = \"/etc/ca.pem\"\n", []string{"local_ca_cert", "token_endpoint_https"}},
		{"memory_limit too small", "memory_limit = \"4MiB\"\n", []string{"memory_limit", "16 MiB", "off"}},
		{"empty allow entry", "[profiles.p]\n" + ok + "[[profiles.p.allow]]\n", []string{`profile "p"`, "allow[0]", "every caller"}},
		{"allow uid and user", "[profiles.p]\n" + ok + "[[profiles.p.allow]]\nuid = 1\nuser = \"bob\"\n", []string{"allow[0]", "uid or user"}},
		{"allow unit not a unit", "[profiles.p]\n" + ok + "[[profiles.p.allow]]\nunit = \"job-a\"\n", []string{"allow[0]", `unit "job-a"`, "job-a.service"}},
		{"allow cgroup relative", "[profiles.p]\n" + ok + "[[profiles.p.allow]]\nunit = \"a.service\"\n[[profiles.p.allow]]\ncgroup = \"system.slice\"\n", []string{"allow[1]", "cgroup", "absolute"}},
		{"allow cgroup root", "[profiles.p]\n" + ok + "[[profiles.p.allow]]\ncgroup = \"/\"\n", []string{"allow[0]", "other than /"}},
		{"allow exe relative", "[profiles.p]\n" + ok + "[[profiles.p.allow]]\nexe = \"bin/app\"\n", []string{"allow[0]", "exe", "absolute"}},
		{"allow sha256 short", "[profiles.p]\n" + ok + "[[profiles.p.allow]]\nsha256 = \"abc\"\n", []string{"allow[0]", "sha256", "64 hex"}},
		{"allow unknown selector", "[profiles.p]\n" + ok + "[[profiles.p.allow]]\npid = 1\n", []string{`unknown key "pid"`}},
		{"client_assertion auth without the file", "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nauth = \"client_assertion\"\n",
			[]string{`profile "p"`, "client_assertion", "file:PATH"}},
		{"client_assertion with a secret", "[profiles.p]\n" + ok + "client_assertion = \"file:/var/run/secrets/tokens/idp\"\n",
			[]string{`profile "p"`, "client_secret", "not used with client_assertion"}},
		{"client_assertion with a key", "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nauth = \"client_assertion\"\nclient_assertion = \"file:t\"\nprivate_key = \"file:k.pem\"\n",
			[]string{`profile "p"`, "private_key", "not used with client_assertion"}},
		{"client_assertion with another auth", "[profiles.p]\n" + ok + "auth = \"client_secret_post\"\nclient_assertion = \"file:t\"\n",
			[]string{`profile "p"`, "client_assertion", `auth = "client_assertion", not client_secret_post`}},
		{"client_assertion from env", "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_assertion = \"env:TOKEN\"\n",
			[]string{`profile "p"`, "client_assertion", "use file:PATH"}},
		{"client_assertion literal", "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_assertion = \"eyJhbGciOiJFUzI1NiJ9.e30.c2ln\"\n",
			[]string{`profile "p"`, "client_assertion", "use file:PATH"}},
		{"client_assertion without client_id", "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_assertion = \"file:t\"\n",
			[]string{`profile "p"`, "client_id: missing"}},
		{"all problems at once", "[profiles.a]\nclient_secret = \"env:S\"\ntoken_url = \"https://x/t\"\n[profiles.b]\nclient_secret = \"env:S\"\ntoken_url = \"https://x/t\"\n",
			[]string{`profile "a": client_id`, `profile "b": client_id`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseConfig([]byte(tt.toml), "test.toml")
			if err == nil {
				t.Fatalf("ParseConfig() = nil error, want one mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseConfig() error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaultsAndOverrides(t *testing.T) {
	cfg, err := config.ParseConfig([]byte(`
min_valid = "45s"
[profiles.a]
token_url = "https://idp.example/token"
client_id = "a"
client_secret = "env:S"
[profiles.b]
token_url = "https://idp.example/token"
client_id = "b"
client_secret = "env:S"
min_valid = "1m"
refresh_at = 0.5
`), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.ProfileTiming("a"), cfg.ProfileTiming("b")
	if a.MinValid.Duration != 45*time.Second || a.RefreshAt != 0.75 || a.FetchTimeout.Duration != 10*time.Second {
		t.Errorf("profile a timing = %+v, want top-level min_valid 45s and built-in defaults", a)
	}
	if b.MinValid.Duration != time.Minute || b.RefreshAt != 0.5 {
		t.Errorf("profile b timing = %+v, want its own min_valid and refresh_at", b)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := secretref.LoadConfig("../../agent.toml.example"); err != nil {
		t.Errorf("agent.toml.example: %v", err)
	}
	// Its commented-out [fleet] block, uncommented, is valid too.
	data, err := os.ReadFile("../../agent.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	var fleet []string
	for line := range strings.Lines(string(data)) {
		if body, ok := strings.CutPrefix(line, "# "); ok && (strings.HasPrefix(body, "[fleet]") || len(fleet) > 0 && len(fleet) < 9 && !strings.HasPrefix(body, " ")) {
			fleet = append(fleet, body)
		}
	}
	cfg, err := config.ParseConfig([]byte(strings.Join(fleet, "")+"[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:S\"\n"), "fleet-example.toml")
	if err != nil || cfg.Fleet == nil || len(cfg.Fleet.Endpoints) != 3 || cfg.Fleet.Host != "worker-17" {
		t.Errorf("agent.toml.example's [fleet] block:\n%s\nparsed as %v", strings.Join(fleet, ""), err)
	}
}

// FuzzParseConfig: any input gives a config or an error, never a panic.
func FuzzParseConfig(f *testing.F) {
	if data, err := os.ReadFile("../../agent.toml.example"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("[profiles.p]\ntoken_url = \"https://x/t\"\nclient_id = \"c\"\nclient_secret = \"env:S\"\nmin_valid = \"1s\"\n"))
	f.Add([]byte("[profiles.\"\"]\n"))
	f.Add([]byte("refresh_at = nan\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.ParseConfig(data, "fuzz.toml")
		if (cfg == nil) == (err == nil) {
			t.Fatalf("ParseConfig = %v, %v; want exactly one", cfg, err)
		}
	})
}

// TestTokenEndpointLoopbackOnly: the token endpoint binds loopback IPs
// only; a name or another address is refused when the file is read.
func TestTokenEndpointLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8731": true, "[::1]:8731": true, "127.0.0.2:0": true,
		"0.0.0.0:8731": false, ":8731": false, "localhost:8731": false, "192.0.2.1:8731": false, "127.0.0.1": false, "[::]:1": false,
	} {
		_, err := config.ParseConfig([]byte(fmt.Sprintf("token_endpoint = %q\n", addr)), "te.toml")
		if (err == nil) != ok {
			t.Errorf("token_endpoint = %q: %v, want accepted %v", addr, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "token_endpoint") {
			t.Errorf("token_endpoint = %q: the error does not name the key: %v", addr, err)
		}
	}
}

func TestConfigFromEnvMissing(t *testing.T) {
	_, err := config.ConfigFromEnv(func(string) string { return "" })
	for _, want := range []string{"ZEEBE_CLIENT_ID", "ZEEBE_AUTHORIZATION_SERVER_URL", "ZEEBE_CLIENT_SECRET", "CAMUNDA_CLIENT_AUTH_CLIENT_ASSERTION_KEYSTORE_PATH"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ConfigFromEnv(nothing) = %v, want it to list %s", err, want)
		}
	}
	env := map[string]string{"ZEEBE_CLIENT_ID": "x", "ZEEBE_CLIENT_SECRET": "y"}
	_, err = config.ConfigFromEnv(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "missing ZEEBE_AUTHORIZATION_SERVER_URL") || strings.Contains(err.Error(), "ZEEBE_CLIENT_ID,") {
		t.Errorf("ConfigFromEnv(no URL) = %v, want only the URL listed", err)
	}
}

// TestLoopbackListen: metrics_listen counts as loopback-only for a
// loopback IP or localhost, never for a wildcard or another address.
func TestLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9464": true, "[::1]:9464": true, "localhost:9464": true, "127.0.0.2:0": true,
		"0.0.0.0:9464": false, ":9464": false, "[::]:9464": false, "192.0.2.1:9464": false, "127.0.0.1": false, "example.com:9464": false, "::1:9464": false,
	} {
		if got := config.LoopbackListen(addr); got != want {
			t.Errorf("LoopbackListen(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestClientAssertionDefault: client_assertion alone makes the profile's
// auth "client_assertion", as a key makes it private_key_jwt; a literal
// token where the file belongs is refused without being repeated.
func TestClientAssertionDefault(t *testing.T) {
	cfg, err := config.ParseConfig([]byte("[profiles.k8s]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_assertion = \"file:/var/run/secrets/tokens/idp-token\"\n"), "test.toml")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if got := cfg.Profiles["k8s"].AuthMethod(); got != "client_assertion" {
		t.Errorf("AuthMethod() = %q, want client_assertion", got)
	}
	const literal = "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjJ9.c2lnbmF0dXJl"
	_, err = config.ParseConfig([]byte("[profiles.k8s]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_assertion = \""+literal+"\"\n"), "test.toml")
	if err == nil || strings.Contains(err.Error(), "eyJleHAiOjJ9") {
		t.Errorf("ParseConfig(literal client_assertion) = %v, want a refusal that does not repeat it", err)
	}
}
