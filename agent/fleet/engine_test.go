package fleet_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/fleet/etcdfleet"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/ipc"
)

// TestColdHerdAcrossAgentsIsOneRequest: agents of several hosts (here,
// three engines, each with its own etcd client) asked at once for a cold
// profile cost the IdP one token request, and all serve that token.
func TestColdHerdAcrossAgentsIsOneRequest(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	agents := fleetAgents(t, 3, profileConfig(t, idp.TokenURL, "fleet-test-secret"))
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
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"fleet-test-secret\"\n[profiles.q]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"fleet-test-secret\"\nscopes = [\"q\"]\n", idp.TokenURL, idp.TokenURL)), "down.toml")
	if err != nil {
		t.Fatal(err)
	}
	dead := client(t, []string{"http://127.0.0.1:1"}) // nothing listens there
	a, err := agent.New(cfg, agent.Options{Fleet: etcdfleet.New(dead, "/tokenagent/", newKey(t), 300*time.Millisecond)})
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

// TestDaemonsShareThroughTheFleet: two daemons (sockets of their own)
// configured with the same [fleet] on a 3-member cluster, each asked on
// its socket: one IdP request, one token.
func TestDaemonsShareThroughTheFleet(t *testing.T) {
	endpoints, prefix := shared(t)
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	dir := t.TempDir()
	raw := make([]byte, 32)
	rand.Read(raw)
	keyFile := filepath.Join(dir, "fleet.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(raw)), 0o600)
	var tokens, sockets []string
	for i := range 2 {
		sub := filepath.Join(dir, fmt.Sprintf("host%d", i))
		os.Mkdir(sub, 0o700)
		path := filepath.Join(sub, "agent.toml")
		os.WriteFile(path, []byte(fmt.Sprintf("store = \"memory\"\n[fleet]\nendpoints = [%q, %q]\nprefix = %q\nseal_key = \"file:%s\"\n[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"fleet-test-secret\"\n",
			endpoints[i], endpoints[2], prefix, keyFile, idp.TokenURL)), 0o600)
		cfg, err := secretref.LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		log := zerolog.Nop()
		d, err := daemon.New(daemon.Options{Config: cfg, ConfigPath: path, Socket: filepath.Join(sub, "agent.sock"), Logger: &log, NoSignals: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		<-d.Ready()
		c := &clientlib.Client{Socket: filepath.Join(sub, "agent.sock")}
		tok, err := c.Token(context.Background(), "p")
		c.Close()
		if err != nil {
			t.Fatalf("daemon %d: %v", i, err)
		}
		tokens = append(tokens, tok.AccessToken)
		sockets = append(sockets, filepath.Join(sub, "agent.sock"))
	}
	if idp.TotalRequests() != 1 || tokens[0] != tokens[1] {
		t.Errorf("two daemons on one fleet: %d IdP requests, same token %v; want 1 and true", idp.TotalRequests(), tokens[0] == tokens[1])
	}
	// Their metrics say who minted and who took the token from the fleet.
	for i, want := range [][]string{
		{`tokenagent_fleet_mints_total{profile="p"} 1`, `tokenagent_fleet_hits_total{profile="p"} 0`, `tokenagent_fleet_sharing{profile="p"} 1`},
		{`tokenagent_fleet_mints_total{profile="p"} 0`, `tokenagent_fleet_hits_total{profile="p"} 1`, `tokenagent_fleet_reads_total{profile="p"} 1`, `tokenagent_fleet_fallbacks_total{profile="p"} 0`},
	} {
		body := metrics(t, sockets[i])
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				t.Errorf("daemon %d's /metrics lacks %s:\n%s", i, w, grepLines(body, "tokenagent_fleet"))
			}
		}
	}
}

// metrics reads /metrics on a daemon's socket.
func metrics(t *testing.T, socket string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://tokenagent/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func grepLines(text, sub string) string {
	var out []string
	for line := range strings.Lines(text) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// TestWatchServesAnotherHostsRefresh: when one host refreshes, the others
// serve the new token as soon as etcd tells them, without asking the IdP.
func TestWatchServesAnotherHostsRefresh(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	agents := fleetAgents(t, 2, profileConfig(t, idp.TokenURL, "fleet-test-secret"))
	self := ipc.Caller{UID: 0}
	first, err := agents[0].Token(context.Background(), self, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := agents[1].Token(context.Background(), self, "p", 0); err != nil || tok.AccessToken != first.AccessToken {
		t.Fatalf("second host: %v, same token %v", err, err == nil && tok.AccessToken == first.AccessToken)
	}
	// Host 0 refreshes (its token reported rejected); host 1 learns by watch.
	fresh, err := agents[0].ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(first.AccessToken), 0)
	if err != nil || fresh.AccessToken == first.AccessToken {
		t.Fatalf("refresh on host 0: %v", err)
	}
	// The watch's delivery is a change of host 1's state: wait for it.
	for timeout := time.After(10 * time.Second); ; {
		changed := agents[1].Changed()
		tok, err := agents[1].Token(context.Background(), self, "p", 0)
		if err == nil && tok.AccessToken == fresh.AccessToken {
			break
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatal("host 1 never served host 0's new token")
		}
	}
	if n := idp.TotalRequests(); n != 2 {
		t.Errorf("IdP requests = %d, want 2 (the first token and host 0's refresh)", n)
	}
	host, _ := os.Hostname()
	if st := agents[1].Status()[0]; st.Fleet != "fleet" || st.FleetStats.Hits < 2 || st.MintedBy != host || st.UpstreamRequests != 0 {
		t.Errorf("host 1's status = fleet %q, hits %d, minted by %q, IdP requests %d; want fleet, 2 hits, %q, 0", st.Fleet, st.FleetStats.Hits, st.MintedBy, st.UpstreamRequests, host)
	}
}

// fleetAgents starts n engines of cfg on the shared cluster, each with an
// etcd client of its own (as on n hosts).
func fleetAgents(t *testing.T, n int, cfgs ...*config.Config) []*agent.Agent {
	t.Helper()
	endpoints, prefix := shared(t)
	key := newKey(t)
	var agents []*agent.Agent
	for i := range n {
		a, err := agent.New(cfgs[min(i, len(cfgs)-1)], agent.Options{Fleet: etcdfleet.New(client(t, endpoints[i%3:i%3+1]), prefix, key, 2*time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		agents = append(agents, a)
	}
	return agents
}

func profileConfig(t *testing.T, tokenURL, secret string) *config.Config {
	t.Helper()
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\n", tokenURL, secret)), "fleet.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPermanentRefusalIsSharedByTheFleet: one host's invalid_client holds
// the other hosts with the same credential off the IdP for
// permanent_backoff; a host with another credential (a rotated secret)
// is not held; a reload forgets the fleet's refusal as it forgets its own.
func TestPermanentRefusalIsSharedByTheFleet(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	wrong := profileConfig(t, idp.TokenURL, "stale-fleet-secret")
	right := profileConfig(t, idp.TokenURL, "fleet-test-secret")
	agents := fleetAgents(t, 4, wrong, wrong, wrong, right)
	self := ipc.Caller{UID: 0}
	for i, a := range agents[:3] {
		_, err := a.Token(context.Background(), self, "p", 0)
		var ie *ipc.Error
		if !errors.As(err, &ie) || !errors.Is(err, ipc.ErrIdPRefused) || ie.Code != "invalid_client" {
			t.Fatalf("host %d with a refused secret: %v; want the IdP's invalid_client", i, err)
		}
		if i > 0 && !strings.Contains(err.Error(), "shared through the fleet") {
			t.Errorf("host %d's error does not say the refusal came through the fleet: %v", i, err)
		}
		if strings.Contains(err.Error(), "stale-fleet-secret") {
			t.Errorf("host %d's error quotes the secret: %v", i, err)
		}
	}
	if n := idp.TotalRequests(); n != 1 {
		t.Errorf("3 hosts with a refused secret: %d IdP requests, want 1", n)
	}
	// A reload on host 1 (say, after a fix at the IdP) asks the IdP again.
	if _, err := agents[1].Reload(wrong); err != nil {
		t.Fatal(err)
	}
	if _, err := agents[1].Token(context.Background(), self, "p", 0); !errors.Is(err, ipc.ErrIdPRefused) {
		t.Fatalf("host 1 after a reload: %v; want refused again", err)
	}
	if n := idp.TotalRequests(); n != 2 {
		t.Errorf("after host 1's reload: %d IdP requests, want 2", n)
	}
	// The host with the right secret is not held by the others' refusal.
	if _, err := agents[3].Token(context.Background(), self, "p", 0); err != nil {
		t.Errorf("host with the right secret: %v; want a token", err)
	}
}

// TestRejectedTokenIsRefreshedOnceForTheFleet: every host reports the
// shared token rejected at once; the fleet fetches one replacement.
func TestRejectedTokenIsRefreshedOnceForTheFleet(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	agents := fleetAgents(t, 3, profileConfig(t, idp.TokenURL, "fleet-test-secret"))
	self := ipc.Caller{UID: 0}
	var first string
	for i, a := range agents {
		tok, err := a.Token(context.Background(), self, "p", 0)
		if err != nil || first != "" && tok.AccessToken != first {
			t.Fatalf("host %d: %v (same token: %v)", i, err, err == nil && tok.AccessToken == first)
		}
		first = tok.AccessToken
	}
	fresh := make([]string, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() {
			tok, err := a.ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(first), 0)
			if err != nil {
				t.Errorf("host %d's report: %v", i, err)
				return
			}
			fresh[i] = tok.AccessToken
		})
	}
	wg.Wait()
	if n := idp.TotalRequests(); n != 2 {
		t.Errorf("3 hosts report the shared token rejected: %d IdP requests, want 2 (the first token and one replacement)", n)
	}
	for i, tok := range fresh {
		if tok == first || tok != fresh[0] {
			t.Errorf("host %d was handed %s after the report; want the one replacement", i, map[bool]string{true: "the rejected token", false: "another token"}[tok == first])
		}
	}
}

// TestWrongSealKeyHostFetchesAlone: a host given another seal_key serves
// its callers (fetching for itself), says so in status, and neither reads
// nor spoils the fleet's records: the others go on sharing.
func TestWrongSealKeyHostFetchesAlone(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	cfg := profileConfig(t, idp.TokenURL, "fleet-test-secret")
	endpoints, prefix := shared(t)
	good, bad := newKey(t), newKey(t)
	var agents []*agent.Agent
	for i, k := range []*fleet.Key{good, bad, good} {
		a, err := agent.New(cfg, agent.Options{Fleet: etcdfleet.New(client(t, endpoints[i:i+1]), prefix, k, 2*time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		agents = append(agents, a)
	}
	self := ipc.Caller{UID: 0}
	var toks []string
	for i, a := range agents {
		tok, err := a.Token(context.Background(), self, "p", 0)
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
		toks = append(toks, tok.AccessToken)
	}
	if n := idp.TotalRequests(); n != 2 || toks[0] != toks[2] || toks[1] == toks[0] {
		t.Errorf("IdP requests = %d, hosts 0 and 2 share: %v, host 1 its own: %v; want 2, true, true", n, toks[0] == toks[2], toks[1] != toks[0])
	}
	if st := agents[1].Status()[0]; st.Fleet != "local: wrong seal_key" {
		t.Errorf("the wrong-key host's status says %q", st.Fleet)
	}
	if st := agents[2].Status()[0]; st.Fleet != "fleet" || st.FleetStats.Hits != 1 {
		t.Errorf("a good host's status says %q with %d fleet hits; want fleet, 1", st.Fleet, st.FleetStats.Hits)
	}
}
