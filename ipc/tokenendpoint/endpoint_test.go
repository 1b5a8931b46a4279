package tokenendpoint_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

const idpSecret = "the-real-idp-secret-0123"

// startAgent runs a real agent with the token endpoint on a free loopback
// port and a profile "zeebe" (audience zeebe-api, scopes read and write)
// for the IdP client "c"; extra goes into the profile.
func startAgent(t *testing.T, extra string) *agenttest.Running {
	t.Helper()
	r, err := agenttest.Start(fmt.Sprintf(`token_endpoint = "127.0.0.1:0"
socket_mode = "0666"
[profiles.zeebe]
token_url = "IDP"
client_id = "c"
client_secret = %q
audience = "zeebe-api"
scopes = ["read", "write"]
%s
`, idpSecret, extra))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	r.IdP.AddClient(idptest.Client{ID: "c", Secret: idpSecret, Method: "client_secret_basic"})
	if r.TokenEndpoint == "" {
		t.Fatal("no token endpoint")
	}
	return r
}

// TestClientCredentialsThroughTheEndpoint: x/oauth2's clientcredentials,
// unmodified, gets the agent's token from the endpoint; asking again
// after the agent has a new token gets that one, not the IdP.
func TestClientCredentialsThroughTheEndpoint(t *testing.T) {
	r := startAgent(t, "")
	cfg := clientcredentials.Config{ClientID: "zeebe", ClientSecret: "not-the-idp-secret", TokenURL: r.TokenEndpoint,
		EndpointParams: url.Values{"audience": {"zeebe-api"}}, Scopes: []string{"read"}}
	first, err := cfg.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.IdP.VerifyToken(first.AccessToken); err != nil || first.TokenType != "Bearer" || first.Expiry.IsZero() {
		t.Fatalf("token = %+v (%v), want a Bearer token of the IdP with an expiry", first, err)
	}
	// The agent moves on (an API rejected the token); the client follows.
	self := ipc.Caller{UID: uint32(os.Geteuid())}
	next, err := r.Agent.ReportRejected(context.Background(), self, "zeebe", ipc.TokenSHA256(first.AccessToken), 0)
	if err != nil {
		t.Fatal(err)
	}
	again, err := cfg.Token(context.Background())
	if err != nil || again.AccessToken != next.AccessToken {
		t.Errorf("second Token through the endpoint = %v; want the agent's new token", err)
	}
	// By the profile's IdP client id as well, and with client_secret_post.
	byClientID := clientcredentials.Config{ClientID: "c", ClientSecret: "x", TokenURL: r.TokenEndpoint, AuthStyle: 1}
	if tok, err := byClientID.Token(context.Background()); err != nil || tok.AccessToken != next.AccessToken {
		t.Errorf("by client id, client_secret_post: %v", err)
	}
	if n := r.IdP.Requests("c"); n != 2 {
		t.Errorf("IdP requests = %d, want 2 (the first token, one refresh)", n)
	}
}

// TestEndpointErrors: RFC 6749 §5.2 answers for what cannot be served.
func TestEndpointErrors(t *testing.T) {
	r := startAgent(t, "")
	for _, tc := range []struct {
		name   string
		form   string
		status int
		code   string
	}{
		{"other audience", "grant_type=client_credentials&client_id=zeebe&audience=other-api", 400, "invalid_target"},
		{"other resource", "grant_type=client_credentials&client_id=zeebe&resource=https://other", 400, "invalid_target"},
		{"scope beyond the profile's", "grant_type=client_credentials&client_id=zeebe&scope=read+admin", 400, "invalid_scope"},
		{"unknown client", "grant_type=client_credentials&client_id=nobody", 401, "invalid_client"},
		{"other grant", "grant_type=password&client_id=zeebe", 400, "unsupported_grant_type"},
		{"no client", "grant_type=client_credentials", 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, r.TokenEndpoint, tc.form)
			var e struct{ Error string }
			if status != tc.status || json.Unmarshal([]byte(body), &e) != nil || e.Error != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.form, status, body, tc.status, tc.code)
			}
			if strings.Contains(body, idpSecret) {
				t.Error("the answer holds the IdP secret")
			}
		})
	}
	req, _ := http.NewRequest("POST", r.TokenEndpoint, strings.NewReader("grant_type=client_credentials&client_id=zeebe"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Errorf("request with Origin: %v, want 403", err)
	}
	resp, err := http.Get(strings.TrimSuffix(r.TokenEndpoint, "/oauth2/token") + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta.TokenEndpoint != r.TokenEndpoint {
		t.Errorf("metadata token_endpoint = %q, want %q", meta.TokenEndpoint, r.TokenEndpoint)
	}
}

// TestEndpointCallerIsTheKernelsUID: the caller is the uid that owns the
// client end of the connection, checked against the allow lists; what it
// sends as a secret does not matter.
func TestEndpointCallerIsTheKernelsUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as other users")
	}
	r := startAgent(t, "allow_uids = [2]") // bin may, daemon (1) may not
	form := "grant_type=client_credentials&client_id=zeebe&client_secret=" + url.QueryEscape(idpSecret)
	if status, body := postAs(t, 1, r.TokenEndpoint, form); status != 401 || !strings.Contains(body, "invalid_client") {
		t.Errorf("unlisted uid 1, even with the real secret: %d %s, want 401 invalid_client", status, body)
	}
	status, body := postAs(t, 2, r.TokenEndpoint, "grant_type=client_credentials&client_id=zeebe&client_secret=whatever")
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &tok) != nil || tok.AccessToken == "" || tok.ExpiresIn <= 0 {
		t.Errorf("listed uid 2: %d, want a token with expires_in", status)
	}
}

func post(t *testing.T, target, form string) (int, string) {
	t.Helper()
	resp, err := http.Post(target, "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// postAs runs this test binary as uid to POST form to target, and returns
// the status and body it got.
func postAs(t *testing.T, uid int, target, form string) (int, string) {
	t.Helper()
	a := runAs(t, uid, nil, "TOKENENDPOINT_TEST_POST="+target, "TOKENENDPOINT_TEST_FORM="+form)
	return a.status, a.body
}

// answer is what a client run by runAs got.
type answer struct {
	status int
	closed bool // the server said Connection: close
	body   string
}

// runAs runs this test binary as uid with only the supplementary groups
// given and env (see TestMain), and returns the answer it printed.
func runAs(t *testing.T, uid int, groups []uint32, env ...string) answer {
	t.Helper()
	self, _ := os.Executable()
	data, _ := os.ReadFile(self)
	dir, err := os.MkdirTemp("", "tokenendpoint-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "poster.test")
	os.WriteFile(bin, data, 0o755)
	cmd := exec.Command(bin)
	cmd.Env = append(env, "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: append([]uint32{}, groups...)}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as uid %d: %v %s", uid, err, stderr.String())
	}
	first, rest, _ := strings.Cut(string(out), "\n")
	closed, body, _ := strings.Cut(rest, "\n")
	status, _ := strconv.Atoi(first)
	return answer{status: status, closed: closed == "true", body: body}
}

// TestEndpointInMetricsAndLog: the endpoint's requests are counted on the
// socket's /metrics and reach the request log, labelled with their door.
func TestEndpointInMetricsAndLog(t *testing.T) {
	var mu sync.Mutex
	var events []door.RequestEvent
	r, err := agenttest.StartWith(`token_endpoint = "127.0.0.1:0"
[profiles.zeebe]
token_url = "IDP"
client_id = "c"
client_secret = "`+idpSecret+`"
`, agenttest.Options{Observe: func(ev door.RequestEvent) { mu.Lock(); events = append(events, ev); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.IdP.AddClient(idptest.Client{ID: "c", Secret: idpSecret, Method: "client_secret_basic"})
	post(t, r.TokenEndpoint, "grant_type=client_credentials&client_id=zeebe")
	post(t, r.TokenEndpoint, "grant_type=client_credentials&client_id=nope")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", r.Socket)
	}}}
	resp, err := hc.Get("http://tokenagent/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tokenagent_requests_total{door="token_endpoint",profile="zeebe",outcome="ok"} 1`,
		`tokenagent_requests_total{door="token_endpoint",profile="-",outcome="invalid_client"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var doors []string
	for _, ev := range events {
		if ev.Door == "token_endpoint" {
			doors = append(doors, fmt.Sprintf("%s:%d", ev.Profile, ev.Status))
		}
	}
	if strings.Join(doors, ",") != "zeebe:200,:401" {
		t.Errorf("token endpoint events = %v, want zeebe:200 and :401", doors)
	}
}

// TestIssuerShapedPaths: client code that builds its token URL from an
// issuer, as Okta's and Auth0's samples do (${ISSUER}/v1/token, an Okta
// custom authorization server's …/oauth2/default/v1/token, Auth0's
// /oauth/token), gets the agent's token there; discovery under Okta's
// default server names it as issuer and the canonical token endpoint.
func TestIssuerShapedPaths(t *testing.T) {
	r := startAgent(t, "")
	root := strings.TrimSuffix(r.TokenEndpoint, "/oauth2/token")
	var first string
	for _, path := range []string{"/v1/token", "/oauth2/default/v1/token", "/oauth/token"} {
		cfg := clientcredentials.Config{ClientID: "zeebe", ClientSecret: "unused", TokenURL: root + path}
		tok, err := cfg.Token(context.Background())
		if err != nil {
			t.Errorf("token at %s: %v", path, err)
			continue
		}
		if first == "" {
			first = tok.AccessToken
		}
		if tok.AccessToken != first {
			t.Errorf("token at %s is not the one the agent holds", path)
		}
	}
	if n := r.IdP.Requests("c"); n != 1 {
		t.Errorf("IdP requests = %d, want 1 for every path", n)
	}
	for _, tc := range []struct{ path, issuer string }{
		{"/.well-known/oauth-authorization-server", root},
		{"/oauth2/default/.well-known/openid-configuration", root + "/oauth2/default"},
		{"/oauth2/default/.well-known/oauth-authorization-server", root + "/oauth2/default"},
	} {
		resp, err := http.Get(root + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		var md struct {
			Issuer        string `json:"issuer"`
			TokenEndpoint string `json:"token_endpoint"`
		}
		err = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || md.Issuer != tc.issuer || md.TokenEndpoint != r.TokenEndpoint {
			t.Errorf("%s: %d %+v %v; want issuer %s and token_endpoint %s", tc.path, resp.StatusCode, md, err, tc.issuer, r.TokenEndpoint)
		}
	}
	if resp, err := http.Post(root+"/v2/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials")); err != nil || resp.StatusCode != 404 {
		t.Errorf("an unknown path: %v %v, want 404", resp, err)
	}
}

// TestMSALDiscovery: the documents MSAL reads under its authority
// (https://HOST/TENANT) name the agent's token endpoint, the tenant's
// issuer, an authorization endpoint and a key set (empty: the agent
// signs nothing), all of which MSAL requires.
func TestMSALDiscovery(t *testing.T) {
	r := startAgent(t, "")
	root := strings.TrimSuffix(r.TokenEndpoint, "/oauth2/token")
	for _, tc := range []struct{ path, issuer string }{
		{"/contoso/v2.0/.well-known/openid-configuration", root + "/contoso/v2.0"},
		{"/contoso/.well-known/openid-configuration", root + "/contoso"},
	} {
		resp, err := http.Get(root + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		err = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || md["issuer"] != tc.issuer || md["token_endpoint"] != r.TokenEndpoint ||
			md["authorization_endpoint"] == nil || md["jwks_uri"] == nil {
			t.Errorf("%s: %d %v %v", tc.path, resp.StatusCode, md, err)
			continue
		}
		jwks, err := http.Get(md["jwks_uri"].(string))
		if err != nil {
			t.Fatal(err)
		}
		var keys struct{ Keys []any }
		json.NewDecoder(jwks.Body).Decode(&keys)
		jwks.Body.Close()
		if jwks.StatusCode != 200 || keys.Keys == nil || len(keys.Keys) != 0 {
			t.Errorf("jwks_uri %s: %d %+v; want an empty key set", md["jwks_uri"], jwks.StatusCode, keys)
		}
	}
}
