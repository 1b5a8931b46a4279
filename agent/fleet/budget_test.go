package fleet_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/clocktest"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/fleet/etcdfleet"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// budgetConfig: profile p (shared through the fleet, budget 5/hour),
// profile solo (fleet = false), both of client c, whose [budgets] entry
// is 10/hour.
func budgetConfig(t *testing.T, tokenURL string) *config.Config {
	t.Helper()
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf(`
[budgets]
c = "10/hour"
[profiles.p]
token_url = %[1]q
client_id = "c"
client_secret = "fleet-test-secret"
budget = "5/hour"
[profiles.solo]
token_url = %[1]q
client_id = "c"
client_secret = "fleet-test-secret"
scopes = ["solo"]
fleet = false
`, tokenURL)), "budget.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// awaitBudget waits until a's status of profile's kind budget satisfies
// ok: status reads the fleet in the background once its count is older
// than a few seconds (on a's clock, moved on here), and the agent says
// when that read ends (Changed).
func awaitBudget(t *testing.T, a *agent.Agent, clock *clocktest.Clock, profile, kind string, ok func(ipc.BudgetInfo) bool) ipc.BudgetInfo {
	t.Helper()
	var b ipc.BudgetInfo
	found := false
	for range 100 { // 500 s on a's clock: well inside the hour
		changed := a.Changed()
		clock.Advance(5 * time.Second)
		if b, found = agenttest.Budget(a, profile, kind); found && ok(b) {
			return b
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("at %v: profile %q's %s budget is %+v (found %v), and the agent's state has not changed for 10 s", clock.Now(), profile, kind, b, found)
		}
	}
	t.Fatalf("at %v: profile %q's %s budget is %+v (found %v); never what the test waits for", clock.Now(), profile, kind, b, found)
	return b
}

// TestBudgetCountedByTheFleet: two agents sharing etcd. The shared
// profile's budget counts the one request the fleet made for it, on both
// hosts (the host that took the token from the fleet made none); the
// client id's budget counts every request of both hosts, those of a
// profile kept to each host included: both see the sum.
func TestBudgetCountedByTheFleet(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	endpoints, prefix := shared(t)
	key := newKey(t)
	start := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var agents []*agent.Agent
	var clocks []*clocktest.Clock
	for i := range 2 {
		clock := clocktest.New(start)
		a, err := agent.New(budgetConfig(t, idp.TokenURL), agent.Options{Clock: clock,
			Fleet: etcdfleet.New(client(t, endpoints[i:i+1]), prefix, key, 2*time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		agents, clocks = append(agents, a), append(clocks, clock)
	}
	self := ipc.Caller{UID: 0}
	ctx := context.Background()
	for _, step := range []struct {
		host     int
		profile  string
		minValid time.Duration
	}{{0, "p", 0}, {1, "p", 0}, {0, "solo", 0}, {1, "solo", 0}, {1, "solo", 59*time.Minute + 30*time.Second}} {
		if step.minValid > 0 { // a minute on, more than the 1-hour token has left: a second request
			clocks[step.host].Advance(time.Minute)
		}
		if _, err := agents[step.host].Token(ctx, self, step.profile, step.minValid); err != nil {
			t.Fatalf("host %d, profile %s: %v", step.host, step.profile, err)
		}
	}
	if n := idp.TotalRequests(); n != 4 {
		t.Fatalf("%d IdP requests; want 4 (p once for the fleet, solo once on host 0 and twice on host 1)", n)
	}
	for i, a := range agents {
		c := awaitBudget(t, a, clocks[i], "solo", "client_id", func(b ipc.BudgetInfo) bool { return b.Used == 4 && b.Counted == "fleet" })
		if c.Limit != 10 || c.ClientID != "c" {
			t.Errorf("host %d: client budget %+v; want 4 of 10 for client id c", i, c)
		}
		p := awaitBudget(t, a, clocks[i], "p", "profile", func(b ipc.BudgetInfo) bool { return b.Used == 1 && b.Counted == "fleet" })
		if p.Limit != 5 {
			t.Errorf("host %d: profile budget %+v; want 1 of 5", i, p)
		}
	}
}

// TestBudgetFleetUnavailable: with etcd unreachable the token is served
// as ever, the request counted on this host, status says so, and the log
// says it once.
func TestBudgetFleetUnavailable(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "fleet-test-secret", Method: "client_secret_basic"})
	var log logBuffer
	logger := zerolog.New(&log)
	clock := clocktest.New(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	dead := client(t, []string{"http://127.0.0.1:1"}) // nothing listens there
	a, err := agent.New(budgetConfig(t, idp.TokenURL), agent.Options{Clock: clock, Logger: &logger,
		Fleet: etcdfleet.New(dead, "/tokenagent/", newKey(t), 300*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, minValid := range []time.Duration{0, 59*time.Minute + 30*time.Second} { // the second, a minute on, more than the token has left
		if minValid > 0 {
			clock.Advance(time.Minute)
		}
		if _, err := a.Token(context.Background(), ipc.Caller{UID: 0}, "solo", minValid); err != nil {
			t.Fatalf("with etcd down: %v; want the token", err)
		}
	}
	b := awaitBudget(t, a, clock, "solo", "client_id", func(b ipc.BudgetInfo) bool { return b.Counted == "host: fleet unavailable" })
	if b.Used != 2 {
		t.Errorf("with etcd down: %+v; want 2 counted on this host", b)
	}
	a.Close()
	// Once per budget: the client id's, which counted the requests, and —
	// if a status read asked the fleet for it before Close — p's.
	log.mu.Lock()
	lines := log.b.String()
	log.mu.Unlock()
	perBudget := map[string]int{}
	for line := range strings.Lines(lines) {
		if strings.Contains(line, "cannot count this budget in the fleet") {
			for _, who := range []string{`"client_id":"c"`, `"profile":"p"`} {
				if strings.Contains(line, who) {
					perBudget[who]++
				}
			}
		}
	}
	if perBudget[`"client_id":"c"`] != 1 || perBudget[`"profile":"p"`] > 1 {
		t.Errorf("the log says the fleet cannot count %v times per budget; want once for client id c, at most once for p:\n%s", perBudget, lines)
	}
}
