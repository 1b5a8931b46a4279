package tokenendpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
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
func (e engine) MayUseAny(c ipc.Caller) bool                            { return e.a.MayUseAny(c) }
func (e engine) Token(ctx context.Context, c ipc.Caller, p string) (*ipc.TokenResponse, error) {
	tok, err := e.a.Token(ctx, c, p, 0)
	if err != nil {
		return nil, err
	}
	return &ipc.TokenResponse{AccessToken: tok.AccessToken, TokenType: tok.TokenType, ExpiresIn: 60}, nil
}

// TestLocalSecretForUnidentifiedCallers: where the kernel cannot say who
// is calling (no /proc/net/tcp entry, as on macOS or from another network
// namespace) and the configuration expects it, only a profile's
// local_secret lets a caller in; a wrong one gets invalid_client, and the
// IdP's secret counts for nothing.
func TestLocalSecretForUnidentifiedCallers(t *testing.T) {
	cfg := localSecretConfig(t)
	target := serveUnidentified(t, cfg, Config{UnidentifiedByLocalSecret: true}, errors.New("another network namespace"))
	for _, tc := range []struct {
		name, client, secret string
		want                 string
	}{
		{"right local secret", "zeebe", localSecret, ""},
		{"wrong local secret", "zeebe", "guess", "invalid_client"},
		{"the IdP's secret", "zeebe", localIdPSecret, "invalid_client"},
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

const localIdPSecret, localSecret = "idp-secret-for-local-test", "bG9jYWwtc2VjcmV0LWZvci10aGUtdGVzdHM"

// localSecretConfig is a configuration with a profile "zeebe" that has a
// local_secret and a profile "nolocal" that has none, on a real IdP.
func localSecretConfig(t *testing.T) *config.Config {
	t.Helper()
	idp := idptest.New()
	t.Cleanup(idp.Close)
	idp.AddClient(idptest.Client{ID: "c", Secret: localIdPSecret, Method: "client_secret_basic"})
	cfg, err := config.ParseConfig([]byte(`store = "memory"
[profiles.zeebe]
token_url = "`+idp.TokenURL+`"
client_id = "c"
client_secret = "`+localIdPSecret+`"
local_secret = "`+localSecret+`"

[profiles.nolocal]
token_url = "`+idp.TokenURL+`"
client_id = "c"
client_secret = "`+localIdPSecret+`"
scopes = ["x"]
`), "local.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serveUnidentified serves a real engine of cfg on a loopback listener
// where every caller is unidentified for credErr (as from another network
// namespace), and returns the token URL.
func serveUnidentified(t *testing.T, cfg *config.Config, sc Config, credErr error) string {
	t.Helper()
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unidentified := func(net.Conn) (ipc.Caller, error) { return ipc.Caller{}, credErr }
	sc.Backend, sc.AgentUID = engine{a}, uint32(os.Geteuid())
	srv := New(sc)
	go srv.Serve(door.Limit(ln, door.ListenConfig{}, unidentified))
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + PathToken
}

// errNoResources is how the door says it ran out of file descriptors.
func errNoResources() error {
	return fmt.Errorf("%w: sock_diag: %w", door.ErrNoResources, syscall.EMFILE)
}
