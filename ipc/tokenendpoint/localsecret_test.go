package tokenendpoint

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// engine serves a real engine to the endpoint, as the daemon does.
type engine struct{ a *agent.Agent }

func (e engine) Match(c *ipc.Caller, q ipc.ClientMatch) (string, error) { return e.a.Match(c, q) }
func (e engine) Token(ctx context.Context, c ipc.Caller, p string) (*ipc.TokenResponse, error) {
	tok, err := e.a.Token(ctx, c, p, 0)
	if err != nil {
		return nil, err
	}
	return &ipc.TokenResponse{AccessToken: tok.AccessToken, TokenType: tok.TokenType, ExpiresIn: 60}, nil
}

// TestLocalSecretForUnidentifiedCallers: where the kernel cannot say who
// is calling (no /proc/net/tcp entry, as on macOS or from another network
// namespace), only a profile's local_secret lets a caller in; a wrong one
// gets invalid_client, and the IdP's secret counts for nothing.
func TestLocalSecretForUnidentifiedCallers(t *testing.T) {
	const idpSecret, localSecret = "idp-secret-for-local-test", "the-local-secret"
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: idpSecret, Method: "client_secret_basic"})
	cfg, err := config.ParseConfig([]byte(`store = "memory"
[profiles.zeebe]
token_url = "`+idp.TokenURL+`"
client_id = "c"
client_secret = "`+idpSecret+`"
local_secret = "`+localSecret+`"

[profiles.nolocal]
token_url = "`+idp.TokenURL+`"
client_id = "c"
client_secret = "`+idpSecret+`"
scopes = ["x"]
`), "local.toml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unidentified := func(net.Conn) (ipc.Caller, error) { return ipc.Caller{}, errors.New("another network namespace") }
	srv := New(Config{Backend: engine{a}, AgentUID: uint32(os.Geteuid())})
	go srv.Serve(door.Limit(ln, door.ListenConfig{}, unidentified))
	defer srv.Close()
	target := "http://" + ln.Addr().String() + PathToken
	for _, tc := range []struct {
		name, client, secret string
		want                 string
	}{
		{"right local secret", "zeebe", localSecret, ""},
		{"wrong local secret", "zeebe", "guess", "invalid_client"},
		{"the IdP's secret", "zeebe", idpSecret, "invalid_client"},
		{"profile without local_secret", "nolocal", localSecret, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.PostForm(target, url.Values{"grant_type": {"client_credentials"}, "client_id": {tc.client}, "client_secret": {tc.secret}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				AccessToken string `json:"access_token"`
				Error       string `json:"error"`
			}
			json.NewDecoder(resp.Body).Decode(&body)
			if tc.want == "" && (resp.StatusCode != 200 || body.AccessToken == "") {
				t.Errorf("%d %s, want a token", resp.StatusCode, body.Error)
			}
			if tc.want != "" && (resp.StatusCode != 401 || body.Error != tc.want || body.AccessToken != "") {
				t.Errorf("%d %q, want 401 %s", resp.StatusCode, body.Error, tc.want)
			}
		})
	}
}
