package gcpmeta_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc/gcpmeta"
)

const (
	email    = "agent@tokenagent-test.iam.gserviceaccount.com"
	platform = "https://www.googleapis.com/auth/cloud-platform"
)

// startAgent runs a real agent whose profile "gcp" uses a service-account
// key (credentials = "file:…", auth = jwt_bearer by default) at the
// in-process IdP, served as a metadata server on a free loopback port;
// extra goes into the profile. It returns the agent and the metadata
// server's base URL.
func startAgent(t *testing.T, extra string) (*agenttest.Running, string) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "sa.json")
	// The key names Google's endpoint; token_url sends the grant to the
	// in-process IdP instead (and is its aud).
	if err := os.WriteFile(key, idptest.ServiceAccountKey(email, "https://oauth2.googleapis.com/token"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := agenttest.Start(`[profiles.gcp]
token_url = "IDP"
credentials = "file:` + key + `"
scopes = ["` + platform + `", "read"]
gcp_metadata = "127.0.0.1:0"
gcp_project = "tokenagent-test"
` + extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	r.IdP.AddServiceAccount(email)
	addr := r.Daemon.GCPMetadataAddr("gcp")
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("GCPMetadataAddr = %q, want a loopback address", addr)
	}
	return r, "http://" + addr
}

// get asks the metadata server for path with the given headers
// (Metadata-Flavor: Google unless headers say otherwise).
func get(t *testing.T, base, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set(gcpmeta.FlavorHeader, gcpmeta.FlavorGoogle)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		} else if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestMetadataServerServesTheProfile: detection, project, email and the
// token, as google-auth-library asks for them; the token is the IdP's,
// fetched once by the jwt-bearer grant and then served from the agent.
func TestMetadataServerServesTheProfile(t *testing.T) {
	r, base := startAgent(t, "")
	for _, tc := range []struct{ path, want string }{
		{"/", "computeMetadata/"},
		{"/computeMetadata/v1/instance", "service-accounts/"},
		{"/computeMetadata/v1/project/project-id", "tokenagent-test"},
		{"/computeMetadata/v1/instance/service-accounts/default/email", email},
		{"/computeMetadata/v1/universe/universe-domain", "googleapis.com"},
	} {
		resp, body := get(t, base, tc.path)
		if resp.StatusCode != 200 || body != tc.want && strings.TrimSpace(body) != tc.want || resp.Header.Get("Metadata-Flavor") != "Google" {
			t.Errorf("GET %s = %d %q (Metadata-Flavor %q), want 200 %q with Metadata-Flavor: Google", tc.path, resp.StatusCode, body, resp.Header.Get("Metadata-Flavor"), tc.want)
		}
	}
	var first string
	for _, path := range []string{
		"/computeMetadata/v1/instance/service-accounts/default/token",
		"/computeMetadata/v1/instance/service-accounts/default/token?scopes=" + platform,
		"/computeMetadata/v1/instance/service-accounts/" + email + "/token?scopes=read," + platform, // Python's google-auth asks by email
	} {
		resp, body := get(t, base, path)
		var tok map[string]any
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &tok) != nil || len(tok) != 3 || tok["token_type"] != "Bearer" || tok["expires_in"].(float64) <= 0 {
			t.Fatalf("GET %s = %d %s, want 200 {access_token, expires_in, token_type: Bearer}", path, resp.StatusCode, body)
		}
		access := tok["access_token"].(string)
		if claims, err := r.IdP.VerifyToken(access); err != nil || claims["sub"] != email {
			t.Fatalf("the token is not the service account's from the IdP: %v %v", claims, err)
		}
		if first == "" {
			first = access
		} else if access != first {
			t.Errorf("GET %s served another token than the first; want the agent's one token", path)
		}
	}
	if n := r.IdP.Requests(email); n != 1 {
		t.Errorf("IdP token requests = %d, want 1 (one jwt-bearer grant, then the agent's token)", n)
	}
	form := r.IdP.LastForm(email)
	if form.Get("grant_type") != idptest.GrantJWTBearer || form.Get("client_secret") != "" {
		t.Errorf("the agent's request to the IdP = %v, want the jwt-bearer grant", form)
	}
	resp, body := get(t, base, "/computeMetadata/v1/instance/service-accounts/default/?recursive=true")
	var info struct {
		Email  string
		Scopes []string
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &info) != nil || info.Email != email || len(info.Scopes) != 2 {
		t.Errorf("the account's directory = %d %s, want its email and scopes", resp.StatusCode, body)
	}
}

// TestMetadataServerRefuses: what is not the metadata protocol, or not
// this profile's, gets an error with Metadata-Flavor still set, and never
// a token.
func TestMetadataServerRefuses(t *testing.T) {
	r, base := startAgent(t, "")
	token := "/computeMetadata/v1/instance/service-accounts/default/token"
	for _, tc := range []struct {
		name, path string
		header     []string
		status     int
	}{
		{"no Metadata-Flavor", token, []string{"Metadata-Flavor", ""}, 403},
		{"no Metadata-Flavor, detection", "/computeMetadata/v1/instance", []string{"Metadata-Flavor", ""}, 403},
		{"another flavor", token, []string{"Metadata-Flavor", "Azure"}, 403},
		{"a browser page", token, []string{"Origin", "http://evil.example"}, 403},
		{"DNS rebinding", token, []string{"Host", "rebind.evil.example"}, 403},
		{"through a proxy", token, []string{"X-Forwarded-For", "192.0.2.1"}, 403},
		{"a scope beyond the profile's", token + "?scopes=" + platform + ",admin", nil, 400},
		{"another account", "/computeMetadata/v1/instance/service-accounts/other@x.iam.gserviceaccount.com/token", nil, 404},
		{"unknown item", "/computeMetadata/v1/instance/hostname", nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, base, tc.path, tc.header...)
			if resp.StatusCode != tc.status || resp.Header.Get("Metadata-Flavor") != "Google" || strings.Contains(body, "access_token") {
				t.Errorf("GET %s with %v = %d %q (Metadata-Flavor %q), want %d with Metadata-Flavor: Google and no token",
					tc.path, tc.header, resp.StatusCode, trim(body), resp.Header.Get("Metadata-Flavor"), tc.status)
			}
		})
	}
	if n := r.IdP.Requests(email); n != 0 {
		t.Errorf("IdP token requests = %d, want 0: nothing here may get a token", n)
	}
}

// trim keeps a failure message short (and a token out of it).
func trim(body string) string {
	if len(body) > 40 {
		return body[:40] + "…"
	}
	return body
}
