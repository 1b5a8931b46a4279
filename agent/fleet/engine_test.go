package fleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// TestColdHerdAcrossAgentsIsOneRequest: agents of several hosts (here,
// three engines, each with its own etcd client) asked at once for a cold
// profile cost the IdP one token request, and all serve that token.
func TestColdHerdAcrossAgentsIsOneRequest(t *testing.T) {
	endpoints := cluster(t, 3)
	key := newKey(t)
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	cfg, err := agent.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"fleet-test-secret\"\n", idp.TokenURL)), "fleet.toml")
	if err != nil {
		t.Fatal(err)
	}
	var agents []*agent.Agent
	for i := range 3 {
		a, err := agent.New(cfg, agent.Options{Fleet: fleet.NewEtcd(client(t, endpoints[i:i+1]), "/tokenagent/", key, 2*time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		agents = append(agents, a)
	}
	self := ipc.Caller{UID: 0}
	tokens := make(chan string, 300)
	var wg sync.WaitGroup
	for _, a := range agents {
		for range 100 {
			wg.Go(func() {
				tok, err := a.Token(context.Background(), self, "p", 0)
				if err != nil {
					t.Error(err)
					return
				}
				tokens <- tok.AccessToken
			})
		}
	}
	wg.Wait()
	close(tokens)
	seen := map[string]int{}
	for tok := range tokens {
		seen[tok]++
	}
	if n := idp.TotalRequests(); n != 1 || len(seen) != 1 {
		t.Errorf("3 agents × 100 callers on a cold profile: %d IdP requests, %d distinct tokens; want 1 and 1", n, len(seen))
	}
}

// TestEtcdDownMeansLocalMode: with every etcd endpoint unreachable, an
// agent serves as a single host would (its own fetch), and does not ask
// etcd again on every fetch.
func TestEtcdDownMeansLocalMode(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	cfg, err := agent.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"fleet-test-secret\"\n[profiles.q]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"fleet-test-secret\"\nscopes = [\"q\"]\n", idp.TokenURL, idp.TokenURL)), "down.toml")
	if err != nil {
		t.Fatal(err)
	}
	dead := client(t, []string{"http://127.0.0.1:1"}) // nothing listens there
	a, err := agent.New(cfg, agent.Options{Fleet: fleet.NewEtcd(dead, "/tokenagent/", newKey(t), 300*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, p := range []string{"p", "q"} {
		if _, err := a.Token(context.Background(), ipc.Caller{UID: 0}, p, 0); err != nil {
			t.Errorf("profile %s with etcd down: %v; want a token fetched by this host", p, err)
		}
	}
	if n := idp.TotalRequests(); n != 2 {
		t.Errorf("IdP requests = %d, want 2 (one per profile, as a single host)", n)
	}
}
