package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/clientlib"
)

// TestBudgetOverTheSocketAndReload: a budget shows in GET /v1/profiles
// and on /metrics over the socket; the daemon's reload (what SIGHUP does)
// applies a new limit to the count so far.
func TestBudgetOverTheSocketAndReload(t *testing.T) {
	f := newFixture(t, "[budgets]\nc = \"10/day\"")
	d, log := f.loggedDaemon(t, daemon.Options{})
	_, stop := serve(t, d)
	defer stop()
	ctx := context.Background()
	c := &clientlib.Client{Socket: f.socket}
	defer c.Close()
	if _, err := c.Token(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	budgetOf := func() clientlib.Budget {
		t.Helper()
		profiles, err := c.Profiles(ctx)
		if err != nil || len(profiles) != 1 || len(profiles[0].Budgets) != 1 {
			t.Fatalf("GET /v1/profiles = %+v, %v; want p with one budget", profiles, err)
		}
		return profiles[0].Budgets[0]
	}
	if b := budgetOf(); b.For != "client_id" || b.ClientID != "c" || b.Used != 1 || b.Limit != 10 || b.Period != "day" || b.Counted != "host" {
		t.Errorf("budget over the socket: %+v; want client id c, 1 of 10 per day, counted on this host", b)
	}
	if body := f.metrics(t); !strings.Contains(body, `tokenagent_idp_budget_used_ratio{client_id="c",period="day"} 0.1`+"\n") {
		t.Errorf("/metrics has no ratio 0.1 for client id c:\n%s", body)
	}
	f.write(t, "[budgets]\nc = \"1/day\"", "p")
	reload(t, d, log)
	if b := budgetOf(); b.Used != 1 || b.Limit != 1 {
		t.Errorf("after the reload to 1/day: %+v; want 1 of 1", b)
	}
	if !strings.Contains(log.String(), "the IdP request budget is spent for this period; not enforced") {
		t.Errorf("the reload to a spent limit did not log the 100%% line:\n%s", log.String())
	}
}
