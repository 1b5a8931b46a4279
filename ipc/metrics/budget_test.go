package metrics_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/metrics"
)

type budgetEngine []metrics.ProfileStats

func (e budgetEngine) ProfileStats() []metrics.ProfileStats { return e }
func (budgetEngine) StoreHealth() ipc.StoreHealth           { return ipc.StoreHealth{State: "memory"} }

// TestBudgetRatio: a profile's budget is a series under its profile, a
// client id's one series however many profiles it counts, its label value
// escaped as the text format wants.
func TestBudgetRatio(t *testing.T) {
	client := ipc.BudgetInfo{For: "client_id", ClientID: `my"client\id`, Limit: 4, Period: "month", Used: 3}
	engine := budgetEngine{
		{Profile: "a", Budgets: []ipc.BudgetInfo{{For: "profile", Limit: 5, Period: "hour", Used: 6}, client}},
		{Profile: "b", Budgets: []ipc.BudgetInfo{client}},
	}
	var b bytes.Buffer
	(&metrics.Writer{Collector: engine}).Write(&b)
	var got []string
	for line := range strings.Lines(b.String()) {
		if strings.HasPrefix(line, "tokenagent_idp_budget_used_ratio{") {
			got = append(got, strings.TrimSpace(line))
		}
	}
	want := []string{
		`tokenagent_idp_budget_used_ratio{profile="a",period="hour"} 1.2`,
		`tokenagent_idp_budget_used_ratio{client_id="my\"client\\id",period="month"} 0.75`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("budget series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
