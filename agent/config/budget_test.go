package config_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/budget"
	"github.com/tokenagent/tokenagent/agent/config"
)

// TestBudgetErrors: each bad budget is refused with its named error and a
// message that names the profile or client id and the setting.
func TestBudgetErrors(t *testing.T) {
	const ok = "token_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:S\"\n"
	for _, tc := range []struct {
		name, toml string
		is         error
		want       []string
	}{
		{"bad number", "[profiles.p]\n" + ok + "budget = \"lots/day\"\n", budget.ErrNumber, []string{`profile "p"`, "budget", `"lots"`}},
		{"unknown period", "[profiles.p]\n" + ok + "budget = \"10/week\"\n", budget.ErrPeriod, []string{`profile "p"`, "budget", `"week"`, "hour, day or month"}},
		{"zero", "[profiles.p]\n" + ok + "budget = \"0/hour\"\n", budget.ErrZero, []string{`profile "p"`, "budget", "at least one"}},
		{"client bad number", "[profiles.p]\n" + ok + "[budgets]\n\"my-client\" = \"1e3/month\"\n", budget.ErrNumber, []string{"[budgets]", `"my-client"`}},
		{"client unknown period", "[profiles.p]\n" + ok + "[budgets]\nc = \"1000/fortnight\"\n", budget.ErrPeriod, []string{"[budgets]", `client id "c"`, `"fortnight"`}},
		{"client zero", "[profiles.p]\n" + ok + "[budgets]\nc = \"0/month\"\n", budget.ErrZero, []string{"[budgets]", `client id "c"`}},
		{"enforce without budget", "[profiles.p]\n" + ok + "budget_enforce = true\n", nil, []string{`profile "p"`, "budget_enforce", `"c"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.ParseConfig([]byte(tc.toml), "test.toml")
			if err == nil {
				t.Fatalf("ParseConfig() = nil error; want one mentioning %q", tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("ParseConfig() error %q is not %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseConfig() error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestBudgetsRead: a profile's budget and a client id's, as the engine
// reads them; a [budgets] entry no profile names is warned about.
func TestBudgetsRead(t *testing.T) {
	cfg, err := config.ParseConfig([]byte(`
[budgets]
"my-client-id" = "5000/month"
"nobody" = "1/hour"

[profiles.p]
token_url = "https://idp.example/token"
client_id = "my-client-id"
client_secret = "env:S"
budget = "1000/day"
budget_enforce = true

[profiles.q]
token_url = "https://idp.example/token"
client_id = "my-client-id"
client_secret = "env:S"
budget_enforce = true
`), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := cfg.ProfileBudget("p"); !ok || b != (budget.Budget{Limit: 1000, Period: budget.Day}) {
		t.Errorf("ProfileBudget(p) = %v, %v", b, ok)
	}
	if b, ok := cfg.ProfileBudget("q"); ok {
		t.Errorf("ProfileBudget(q) = %v; want none", b)
	}
	if b, ok := cfg.ClientBudget("my-client-id"); !ok || b != (budget.Budget{Limit: 5000, Period: budget.Month}) {
		t.Errorf("ClientBudget(my-client-id) = %v, %v", b, ok)
	}
	warnings := strings.Join(cfg.Warnings(), "\n")
	if !strings.Contains(warnings, `"nobody"`) || strings.Contains(warnings, `"my-client-id"`) {
		t.Errorf("Warnings() = %q; want one about \"nobody\" alone", warnings)
	}
}

// TestExampleBudgetsAreValid: agent.toml.example's commented-out budget
// settings, uncommented, are valid and mean what they say.
func TestExampleBudgetsAreValid(t *testing.T) {
	data, err := os.ReadFile("../../agent.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	var table, profile []string
	for line := range strings.Lines(string(data)) {
		body, ok := strings.CutPrefix(line, "# ")
		switch {
		case !ok:
		case strings.HasPrefix(body, "[budgets]"), len(table) == 1:
			table = append(table, body)
		case strings.HasPrefix(body, "budget = "), strings.HasPrefix(body, "budget_enforce = "):
			profile = append(profile, body)
		}
	}
	text := strings.Join(table, "") + "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"zeebe-worker\"\nclient_secret = \"env:S\"\n" + strings.Join(profile, "")
	cfg, err := config.ParseConfig([]byte(text), "budget-example.toml")
	if err != nil {
		t.Fatalf("agent.toml.example's budgets:\n%s\nparsed as %v", text, err)
	}
	if b, ok := cfg.ClientBudget("zeebe-worker"); !ok || b != (budget.Budget{Limit: 5000, Period: budget.Month}) {
		t.Errorf("the example's [budgets] entry: %v, %v", b, ok)
	}
	if b, ok := cfg.ProfileBudget("p"); !ok || b != (budget.Budget{Limit: 1000, Period: budget.Day}) || !cfg.Profiles["p"].BudgetEnforce {
		t.Errorf("the example's profile budget: %v, %v, enforce %v", b, ok, cfg.Profiles["p"].BudgetEnforce)
	}
}
