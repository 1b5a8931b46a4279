package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/clientlib"
)

// TestRenderBudgets: status lists each budget once — a client id's under
// the first of its profiles — with its use against the limit, the
// projection, when the period ends and who counts it; profiles without
// budgets add no table.
func TestRenderBudgets(t *testing.T) {
	now := time.Date(2026, 11, 24, 18, 58, 0, 0, time.UTC)
	client := clientlib.Budget{For: "client_id", ClientID: "my-client-id", Limit: 5000, Period: "month", PeriodEnd: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Used: 3100, Projected: 4029, Counted: "fleet"}
	profiles := []clientlib.ProfileStatus{
		{Name: "orders", Budgets: []clientlib.Budget{
			{For: "profile", Limit: 1000, Period: "day", PeriodEnd: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), Used: 812, Projected: 1027, Counted: "fleet", Enforced: true},
			client,
		}},
		{Name: "billing", Budgets: []clientlib.Budget{client}},
		{Name: "reports", Budgets: []clientlib.Budget{{For: "profile", Limit: 5, Period: "hour", PeriodEnd: time.Date(2026, 11, 24, 19, 0, 0, 0, time.UTC), Used: 6, Projected: 6,
			Counted: "host: fleet unavailable", Enforced: true, Paused: true}}},
	}
	var b strings.Builder
	if err := renderStatus(&b, profiles, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"profile orders", "812/1000 per day (81%)", "1027", "5h2m0s", "fleet, enforced",
		"client_id my-client-id", "3100/5000 per month (62%)", "4029",
		"profile reports", "6/5 per hour (120%)", "host: fleet unavailable, enforced: paused until the period ends",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not show %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "client_id my-client-id"); n != 1 {
		t.Errorf("the client id's budget is shown %d times; want once:\n%s", n, out)
	}
	b.Reset()
	renderStatus(&b, []clientlib.ProfileStatus{{Name: "plain"}}, now)
	if strings.Contains(b.String(), "BUDGET") {
		t.Errorf("a profile without budgets shows a budget table:\n%s", b.String())
	}
}
