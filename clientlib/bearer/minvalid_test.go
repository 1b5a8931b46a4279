package bearer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/clientlib/bearer"
)

// TestAPINeverGetsLessThanMinValid (issue 21, must-show 5): a real agent
// whose IdP issues 34 s tokens (min_valid 30 s, the default) and a real
// API on loopback that reads the exp of every token it receives. Through
// oauth2.NewClient with bearer.TokenSource — which oauth2 wraps in a
// ReuseTokenSource that keeps a token until 10 s before its Expiry — and
// through bearer.Transport, no request reaches the API with less than
// min_valid left, across several of the agent's refreshes.
func TestAPINeverGetsLessThanMinValid(t *testing.T) {
	if testing.Short() {
		t.Skip("runs through three token lifetimes of a few seconds each")
	}
	running, err := agenttest.Start(`
[profiles.viaoauth2]
token_url = "IDP"
client_id = "oauth2-client"
client_secret = "bearer-secret"

[profiles.viatransport]
token_url = "IDP"
client_id = "transport-client"
client_secret = "bearer-secret"
`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(running.Close)          // after the parallel subtests
	const minValid = 30 * time.Second // the agent's default min_valid
	// 34 s tokens: each is the agent's to hand out for about 4 s before
	// less than min_valid is left, so the test sees several in seconds.
	running.IdP.SetTTL(34 * time.Second)
	for _, id := range []string{"oauth2-client", "transport-client"} {
		running.IdP.AddClient(idptest.Client{ID: id, Secret: "bearer-secret", Method: "client_secret_basic"})
	}

	for _, tc := range []struct {
		name, profile, clientID string
		httpClient              func(c *clientlib.Client) *http.Client
	}{
		{"oauth2.NewClient(TokenSource)", "viaoauth2", "oauth2-client", func(c *clientlib.Client) *http.Client {
			return oauth2.NewClient(context.Background(), bearer.TokenSource(c, "viaoauth2"))
		}},
		{"Transport", "viatransport", "transport-client", func(c *clientlib.Client) *http.Client {
			return &http.Client{Transport: bearer.Transport(c, "viatransport", nil)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newExpiryAPI(t, running.IdP)
			c := &clientlib.Client{Socket: running.Socket}
			defer c.Close()
			hc := tc.httpClient(c)
			// Until the agent has fetched the third token: two
			// replacements, each when the one before had min_valid left.
			for n := 0; running.IdP.Requests(tc.clientID) < 3; n++ {
				resp, err := hc.Get(api.URL)
				if err != nil {
					t.Fatalf("request %d: %v", n, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: API answered %s", n, resp.Status)
				}
				if left, short := api.shortest(); short && left < minValid {
					t.Fatalf("the API received a token with %v left after %d requests; want at least min_valid %v", left, n+1, minValid)
				}
				time.Sleep(20 * time.Millisecond) // a steady trickle of requests, not a wait for anything
			}
			if api.count() < 10 {
				t.Errorf("the API saw %d requests; want enough to span the tokens", api.count())
			}
		})
	}
}

// expiryAPI is an API server that verifies each bearer token with the IdP
// and records how long it had left when it arrived.
type expiryAPI struct {
	*httptest.Server
	mu       sync.Mutex
	n        int
	least    time.Duration
	hasLeast bool
}

func newExpiryAPI(t *testing.T, idp *idptest.Server) *expiryAPI {
	a := &expiryAPI{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received := time.Now()
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		claims, err := idp.VerifyToken(token)
		if !ok || err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		exp, err := claims.GetExpirationTime()
		if err != nil || exp == nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.n++
		if left := exp.Sub(received); !a.hasLeast || left < a.least {
			a.least, a.hasLeast = left, true
		}
	}))
	t.Cleanup(a.Close)
	return a
}

// shortest is the least validity any received token had left.
func (a *expiryAPI) shortest() (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.least, a.hasLeast
}

func (a *expiryAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}
