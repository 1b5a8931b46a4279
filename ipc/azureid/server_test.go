package azureid_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
)

const idpSecret = "the-real-idp-secret-0123"

// TestMain doubles as a client run as another user (see getAs).
func TestMain(m *testing.M) {
	if socket := os.Getenv("AZUREID_TEST_SOCKET"); socket != "" {
		c := &clientlib.Client{Socket: socket}
		h, err := c.Health(context.Background())
		if err != nil {
			fmt.Println("0\n" + err.Error())
			return
		}
		body, _ := json.Marshal(h)
		fmt.Printf("200\n%s", body)
		return
	}
	if target := os.Getenv("AZUREID_TEST_GET"); target != "" {
		status, body := get(target, strings.Split(os.Getenv("AZUREID_TEST_HEADERS"), "\n"))
		fmt.Printf("%d\n%s", status, body)
		return
	}
	os.Exit(m.Run())
}

// get sends one GET with headers ("Name: value") and returns what came.
func get(target string, headers []string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	for _, h := range headers {
		if k, v, ok := strings.Cut(h, ": "); ok {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// startAgent runs a real agent with the Azure endpoint on a free port
// and profiles for the IdP client "c": arm (Entra scope of Azure
// Resource Manager), graph and graph2 (both Microsoft Graph by audience,
// with and without a trailing slash), and extra. It returns the agent
// and what /v1/health tells this user about the endpoint.
func startAgent(t *testing.T, extra string) (*agenttest.Running, *clientlib.AzureIdentity) {
	t.Helper()
	r, err := agenttest.Start(fmt.Sprintf(`azure_identity_endpoint = "127.0.0.1:0"
socket_mode = "0666"
[profiles.arm]
token_url = "IDP"
client_id = "c"
client_secret = %[1]q
scopes = ["https://management.azure.com/.default"]
[profiles.graph]
token_url = "IDP"
client_id = "c"
client_secret = %[1]q
audience = "https://graph.microsoft.com/"
[profiles.graph2]
token_url = "IDP"
client_id = "c2"
client_secret = %[1]q
audience = "https://graph.microsoft.com"
%[2]s
`, idpSecret, extra))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	for _, id := range []string{"c", "c2"} {
		r.IdP.AddClient(idptest.Client{ID: id, Secret: idpSecret, Method: "client_secret_basic"})
	}
	c := &clientlib.Client{Socket: r.Socket}
	defer c.Close()
	h, err := c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.AzureIdentity == nil || h.AzureIdentity.Header == "" {
		t.Fatalf("health's azure_identity = %+v, want the endpoint and its header for the agent's own user", h.AzureIdentity)
	}
	return r, h.AzureIdentity
}

// answer is the endpoint's JSON, success or error.
type answer struct {
	AccessToken string `json:"access_token"`
	ExpiresOn   string `json:"expires_on"`
	ExpiresIn   string `json:"expires_in"`
	Resource    string `json:"resource"`
	TokenType   string `json:"token_type"`
	ClientID    string `json:"client_id"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func ask(t *testing.T, target string, headers ...string) (int, answer, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	for _, h := range headers {
		if k, v, ok := strings.Cut(h, ": "); ok {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("GET %s: %d, body not JSON: %v", target, resp.StatusCode, err)
	}
	return resp.StatusCode, a, resp.Header
}

func appService(az *clientlib.AzureIdentity, query string) string {
	return az.Endpoint + "?api-version=2019-08-01&" + query
}

// TestBothProtocolsServeOneToken: the App Service protocol (with the
// agent's header) and IMDS (with Metadata: true, however the SDKs join
// host and path) answer a resource with the token of the profile whose
// Entra scope is that resource's, in the shape the SDKs parse — one IdP
// request for all of them.
func TestBothProtocolsServeOneToken(t *testing.T) {
	r, az := startAgent(t, "")
	resource := url.QueryEscape("https://management.azure.com")
	secret := "X-IDENTITY-HEADER: " + az.Header
	var first string
	for _, c := range []struct {
		name, target, header string
	}{
		{"app service", appService(az, "resource="+resource), secret},
		{"app service, trailing slash", appService(az, "resource="+resource+"%2F"), secret},
		{"app service, path with slash", az.Endpoint + "/?api-version=2019-08-01&resource=" + resource, secret},
		{"imds (python)", az.IMDSHost + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + resource, "Metadata: true"},
		{"imds, trailing slash", az.IMDSHost + "/metadata/identity/oauth2/token/?api-version=2018-02-01&resource=" + resource, "Metadata: true"},
		{"imds (node, host with a slash)", az.IMDSHost + "//metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + resource, "Metadata: true"},
	} {
		before := time.Now().Unix()
		status, a, _ := ask(t, c.target, c.header)
		if status != http.StatusOK {
			t.Fatalf("%s: %d %+v, want 200", c.name, status, a)
		}
		if _, err := r.IdP.VerifyToken(a.AccessToken); err != nil {
			t.Fatalf("%s: access_token is not the IdP's: %v", c.name, err)
		}
		on, err1 := strconv.ParseInt(a.ExpiresOn, 10, 64)
		in, err2 := strconv.ParseInt(a.ExpiresIn, 10, 64)
		if err1 != nil || err2 != nil || on <= before || in <= 0 || a.TokenType != "Bearer" || a.ClientID != "c" || !strings.HasPrefix(a.Resource, "https://management.azure.com") {
			t.Errorf("%s: answer %+v; want decimal expires_on/expires_in in the future, Bearer, client_id c, the resource asked for", c.name, a)
		}
		if first == "" {
			first = a.AccessToken
		} else if a.AccessToken != first {
			t.Errorf("%s: a token other than the first", c.name)
		}
	}
	if n := r.IdP.Requests("c"); n != 1 {
		t.Errorf("IdP requests = %d, want 1", n)
	}
}

// TestRefusals: each protocol's own check, and what no profile fits, are
// errors with a code and a description, never a token.
func TestRefusals(t *testing.T) {
	_, az := startAgent(t, "")
	arm := "resource=" + url.QueryEscape("https://management.azure.com")
	imds := az.IMDSHost + "/metadata/identity/oauth2/token?api-version=2018-02-01&"
	for _, c := range []struct {
		name, target, header string
		status               int
		code                 string
	}{
		{"app service without the header", appService(az, arm), "", 403, "invalid_request"},
		{"app service with another header", appService(az, arm), "X-IDENTITY-HEADER: " + az.Header + "x", 403, "invalid_request"},
		{"app service, other api-version", az.Endpoint + "?api-version=2017-09-01&" + arm, "X-IDENTITY-HEADER: " + az.Header, 400, "invalid_request"},
		{"imds without Metadata", imds + arm, "", 400, "invalid_request"},
		{"imds without resource", imds, "Metadata: true", 400, "invalid_request"},
		{"a resource no profile has", imds + "resource=https%3A%2F%2Fvault.azure.net", "Metadata: true", 400, "invalid_request"},
		{"two profiles fit", imds + "resource=https%3A%2F%2Fgraph.microsoft.com", "Metadata: true", 400, "invalid_request"},
		{"client_id of no fitting profile", imds + arm + "&client_id=graph", "Metadata: true", 400, "invalid_request"},
		{"object_id", imds + arm + "&object_id=x", "Metadata: true", 400, "invalid_request"},
		{"resource twice", imds + arm + "&" + arm, "Metadata: true", 400, "invalid_request"},
		{"another path", az.IMDSHost + "/oauth2/token", "Metadata: true", 404, "not_found"},
		{"a browser's request", imds + arm, "Origin: http://evil.example", 403, "invalid_request"},
	} {
		headers := []string{c.header}
		if c.name == "a browser's request" {
			headers = append(headers, "Metadata: true")
		}
		status, a, _ := ask(t, c.target, headers...)
		if status != c.status || a.Error != c.code || a.Description == "" || a.AccessToken != "" {
			t.Errorf("%s: %d %+v, want %d %s with a description and no token", c.name, status, a, c.status, c.code)
		}
	}
}

// TestClientIDAndResourceIDNarrow: where several profiles fit a
// resource, client_id (a profile's name or IdP client id) or mi_res_id /
// msi_res_id (ending in a profile's name) pick one, on either protocol.
func TestClientIDAndResourceIDNarrow(t *testing.T) {
	r, az := startAgent(t, "")
	graph := "resource=" + url.QueryEscape("https://graph.microsoft.com/")
	imds := az.IMDSHost + "/metadata/identity/oauth2/token?api-version=2018-02-01&" + graph
	for _, c := range []struct {
		name, target, header, clientID string
	}{
		{"client_id = profile name", imds + "&client_id=graph2", "Metadata: true", "c2"},
		{"client_id = IdP client id", imds + "&client_id=c", "Metadata: true", "c"},
		{"msi_res_id", imds + "&msi_res_id=" + url.QueryEscape("/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/graph2"), "Metadata: true", "c2"},
		{"mi_res_id", appService(az, graph+"&mi_res_id="+url.QueryEscape("/subscriptions/s/userAssignedIdentities/graph")), "X-IDENTITY-HEADER: " + az.Header, "c"},
	} {
		status, a, _ := ask(t, c.target, c.header)
		if status != http.StatusOK || a.ClientID != c.clientID {
			t.Errorf("%s: %d %+v, want 200 with client_id %s", c.name, status, a, c.clientID)
		}
	}
	if r.IdP.Requests("c") != 1 || r.IdP.Requests("c2") != 1 {
		t.Errorf("IdP requests c=%d c2=%d, want one each", r.IdP.Requests("c"), r.IdP.Requests("c2"))
	}
}

// TestIdPDownIs503WithRetryAfter: the agent's trouble with its IdP is a
// 503 with Retry-After, which the SDKs retry, not a 4xx they give up on.
func TestIdPDownIs503WithRetryAfter(t *testing.T) {
	r, az := startAgent(t, "")
	r.IdP.SetFault(idptest.Fault{Status: http.StatusServiceUnavailable})
	status, a, h := ask(t, az.IMDSHost+"/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com", "Metadata: true")
	if status != http.StatusServiceUnavailable || a.Error != "temporarily_unavailable" || h.Get("Retry-After") == "" {
		t.Errorf("with the IdP down: %d %+v Retry-After %q; want 503 temporarily_unavailable with Retry-After", status, a, h.Get("Retry-After"))
	}
}

// TestOtherUserGetsNoToken: a user no profile lists gets an error, not
// a token, however it asks — even with the header secret — and
// /v1/health does not tell it the secret.
func TestOtherUserGetsNoToken(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	r, az := startAgent(t, "")
	const nobody = 65533 // no profile lists it; not the overflow uid
	arm := "resource=" + url.QueryEscape("https://management.azure.com")
	for _, c := range []struct{ target, header string }{
		{appService(az, arm), "X-IDENTITY-HEADER: " + az.Header},
		{az.IMDSHost + "/metadata/identity/oauth2/token?api-version=2018-02-01&" + arm, "Metadata: true"},
	} {
		status, body := getAs(t, nobody, c.target, c.header)
		if status != http.StatusBadRequest || strings.Contains(body, "access_token") || !strings.Contains(body, "invalid_request") {
			t.Errorf("uid %d: GET %s = %d %s; want 400 invalid_request and no token", nobody, c.target, status, body)
		}
	}
	status, body := runAs(t, nobody, "AZUREID_TEST_SOCKET="+r.Socket)
	if status != http.StatusOK || !strings.Contains(body, az.Endpoint) || strings.Contains(body, az.Header) {
		t.Errorf("uid %d: /v1/health = %d %s; want the endpoint without the header secret", nobody, status, body)
	}
}

// getAs runs this test binary as uid (see TestMain) for one GET.
func getAs(t *testing.T, uid int, target string, headers ...string) (int, string) {
	t.Helper()
	return runAs(t, uid, "AZUREID_TEST_GET="+target, "AZUREID_TEST_HEADERS="+strings.Join(headers, "\n"))
}

// runAs runs this test binary as uid with env and returns the status and
// body it printed.
func runAs(t *testing.T, uid int, env ...string) (int, string) {
	t.Helper()
	self, _ := os.Executable()
	data, _ := os.ReadFile(self)
	dir, err := os.MkdirTemp("", "azureid-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "getter.test")
	os.WriteFile(bin, data, 0o755)
	cmd := exec.Command(bin)
	cmd.Env = append(env, "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as uid %d: %v %s", uid, err, stderr.String())
	}
	first, body, _ := strings.Cut(string(out), "\n")
	status, _ := strconv.Atoi(first)
	return status, body
}

// TestHeaderSecretSurvivesRestart: the secret is made once and kept in
// the store's directory (0600), so the environment callers were given
// still works after a restart.
func TestHeaderSecretSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	store := fmt.Sprintf("store = %q\n", filepath.Join(dir, "tokens.db"))
	var headers []string
	for range 2 {
		r, err := agenttest.Start(store + "azure_identity_endpoint = \"127.0.0.1:0\"\n[profiles.p]\ntoken_url = \"IDP\"\nclient_id = \"c\"\nclient_secret = \"s\"\n")
		if err != nil {
			t.Fatal(err)
		}
		c := &clientlib.Client{Socket: r.Socket}
		h, err := c.Health(context.Background())
		c.Close()
		r.Close()
		if err != nil || h.AzureIdentity == nil {
			t.Fatalf("health = %+v, %v", h, err)
		}
		headers = append(headers, h.AzureIdentity.Header)
	}
	st, err := os.Stat(filepath.Join(dir, "azure-identity-header"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("azure-identity-header: %v, %v; want a 0600 file in the store's directory", st, err)
	}
	if len(headers[0]) < 32 || headers[0] != headers[1] {
		t.Errorf("headers across a restart: %q, %q; want the same secret", headers[0], headers[1])
	}
}
