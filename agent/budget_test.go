package agent_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/metrics"
)

// budgetOf is profile's budget of the given kind ("profile" or
// "client_id") as status shows it.
func budgetOf(t *testing.T, a *agent.Agent, profile, kind string) ipc.BudgetInfo {
	t.Helper()
	b, ok := agenttest.Budget(a, profile, kind)
	if !ok {
		t.Fatalf("profile %q shows no %s budget", profile, kind)
	}
	return b
}

// ratioLine is the /metrics line of profile p's budget ratio.
func ratioLine(a *agent.Agent) string {
	var b bytes.Buffer
	(&metrics.Writer{Collector: a}).Write(&b)
	for line := range strings.Lines(b.String()) {
		if strings.HasPrefix(line, "tokenagent_idp_budget_used_ratio{") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// TestBudgetEnforced: budget = "5/hour" with 10 s tokens refreshed at
// 75 %. The 4th request logs the 80 % line and the 5th the 100 % line,
// once each however many requests follow; with budget_enforce the agent
// then asks the IdP no more while its token is valid (callers get that
// token, never an expired one), asks again once none is valid (logged
// once), and starts afresh in the next hour.
func TestBudgetEnforced(t *testing.T) {
	h := newHarness(t, "budget = \"5/hour\"\nbudget_enforce = true\nmin_valid = \"1s\"\n")
	h.srv.SetTTL(10 * time.Second)
	h.mustToken(0)
	if b := budgetOf(t, h.agent, "p", "profile"); b.Used != 1 || b.Limit != 5 || b.Period != "hour" || b.Counted != "host" || !b.Enforced || b.Paused {
		t.Fatalf("after the first request: %+v; want 1 of 5 per hour, counted on this host, enforced, not paused", b)
	}
	// The proactive refreshes use the budget up.
	for h.requests() < 5 {
		before := h.requests()
		h.clock.Advance(time.Second)
		if h.clock.Now().Sub(start) > time.Minute {
			t.Fatalf("%d requests after a minute of 10 s tokens; want 5", before)
		}
	}
	if line := ratioLine(h.agent); line != `tokenagent_idp_budget_used_ratio{profile="p",period="hour"} 1` {
		t.Errorf("after 5 of 5 requests, /metrics says %q; want the ratio 1", line)
	}
	b := budgetOf(t, h.agent, "p", "profile")
	if b.Used != 5 || !b.Paused || !b.PeriodEnd.Equal(start.Add(time.Hour)) || b.Projected < 5 {
		t.Errorf("after 5 of 5 requests: %+v; want used 5, paused until 13:00, a projection of 5 or more", b)
	}
	// Paused: the held token is served until it expires, with no request.
	held := h.mustToken(0)
	for h.clock.Now().Before(held.ExpiresAt) {
		tok := h.mustToken(0)
		if tok.AccessToken != held.AccessToken || !tok.ExpiresAt.After(h.clock.Now()) {
			t.Fatalf("at %v: served a token expiring at %v; want the held one, valid", h.clock.Now().Sub(start), tok.ExpiresAt.Sub(start))
		}
		if n := h.requests(); n != 5 {
			t.Fatalf("at %v, the budget spent and a valid token held: %d IdP requests; want 5", h.clock.Now().Sub(start), n)
		}
		h.clock.Advance(500 * time.Millisecond)
	}
	// No valid token: the IdP is asked, so that service continues.
	if tok := h.mustToken(0); tok.AccessToken == held.AccessToken || h.requests() != 6 {
		t.Errorf("with the held token expired: %d requests, the same token %v; want a 6th request and a new token", h.requests(), tok.AccessToken == held.AccessToken)
	}
	if line := ratioLine(h.agent); line != `tokenagent_idp_budget_used_ratio{profile="p",period="hour"} 1.2` {
		t.Errorf("after 6 of 5 requests, /metrics says %q; want the ratio 1.2", line)
	}
	// The 7th, when that token expires too: still no new 80 %/100 % line.
	h.clock.Advance(11 * time.Second)
	h.mustToken(0)
	log := suiteLog.textFor(t)
	for _, want := range []struct {
		text string
		n    int
	}{
		{"80% of the IdP request budget is used in this period", 1},
		{"the IdP request budget is spent for this period; budget_enforce", 1},
		{"the profile holds no valid token: asking the IdP anyway", 1},
	} {
		if n := strings.Count(log, want.text); n != want.n {
			t.Errorf("the log has %q %d times; want %d:\n%s", want.text, n, want.n, log)
		}
	}
	if n := h.requests(); n != 7 {
		t.Errorf("%d requests; want 7", n)
	}
	// The next hour: the count starts afresh and refreshes resume.
	h.clock.Advance(start.Add(time.Hour).Sub(h.clock.Now()))
	before := h.requests()
	h.mustToken(0)
	h.clock.Advance(10 * time.Second)
	if b := budgetOf(t, h.agent, "p", "profile"); b.Used < 1 || b.Used > 3 || b.Paused || !b.PeriodEnd.Equal(start.Add(2*time.Hour)) {
		t.Errorf("in the next hour: %+v; want a fresh count, not paused, ending at 14:00", b)
	}
	if h.requests() <= before {
		t.Errorf("in the next hour: no request (%d before, %d now); want refreshes to resume", before, h.requests())
	}
}

// TestBudgetNotEnforced: without budget_enforce the budget is counted and
// logged, and refreshes go on past it.
func TestBudgetNotEnforced(t *testing.T) {
	h := newHarness(t, "budget = \"5/hour\"\nmin_valid = \"1s\"\n")
	h.srv.SetTTL(10 * time.Second)
	h.mustToken(0)
	for range 60 {
		h.clock.Advance(time.Second)
		h.mustToken(0)
	}
	if n := h.requests(); n < 7 {
		t.Errorf("a minute of 10 s tokens, budget not enforced: %d requests; want them to go on past 5", n)
	}
	log := suiteLog.textFor(t)
	if n := strings.Count(log, "not enforced (budget_enforce is off)"); n != 1 {
		t.Errorf("the log has the 100%% line %d times; want 1:\n%s", n, log)
	}
	if b := budgetOf(t, h.agent, "p", "profile"); b.Used != int64(h.requests()) || b.Enforced || b.Paused {
		t.Errorf("status %+v; want used %d, not enforced", b, h.requests())
	}
}

// TestBudgetClientAndReload: a [budgets] entry counts every profile of
// its client id together, shown once on /metrics; a reload (SIGHUP)
// applies a new limit and budget_enforce to the count so far, without
// replacing the profiles.
func TestBudgetClientAndReload(t *testing.T) {
	h := newHarness(t, "min_valid = \"1s\"\n")
	base := strings.NewReplacer("URL", fmt.Sprintf("%q", h.srv.TokenURL), "SECRET", fmt.Sprintf("%q", testSecret)).Replace(
		"[profiles.p]\ntoken_url = URL\nclient_id = \"c\"\nclient_secret = SECRET\nmin_valid = \"1s\"\nENFORCE\n" +
			"[profiles.q]\ntoken_url = URL\nclient_id = \"c\"\nclient_secret = SECRET\nscopes = [\"q\"]\nmin_valid = \"1s\"\n")
	h.agent = h.newAgent("[budgets]\nc = \"10/day\"\n" + strings.Replace(base, "ENFORCE", "", 1))
	h.mustToken(0)
	if _, err := h.agent.Token(t.Context(), self, "q", 0); err != nil {
		t.Fatal(err)
	}
	b := budgetOf(t, h.agent, "q", "client_id")
	if b.Used != 2 || b.ClientID != "c" || b.Limit != 10 || b.Period != "day" {
		t.Errorf("client budget after one request of each profile: %+v; want 2 of 10 per day for client id c", b)
	}
	if line := ratioLine(h.agent); line != `tokenagent_idp_budget_used_ratio{client_id="c",period="day"} 0.2` {
		t.Errorf("/metrics: %q; want the client's ratio 0.2, once", line)
	}
	cfg, err := config.ParseConfig([]byte("[budgets]\nc = \"2/day\"\n"+strings.Replace(base, "ENFORCE", "budget_enforce = true", 1)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := h.agent.Reload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Unchanged) != 2 {
		t.Errorf("reload of budgets alone: %+v; want both profiles unchanged", sum)
	}
	b = budgetOf(t, h.agent, "p", "client_id")
	if b.Used != 2 || b.Limit != 2 || !b.Enforced || !b.Paused {
		t.Errorf("after the reload to 2/day, enforced on p: %+v; want 2 of 2, paused", b)
	}
	if q := budgetOf(t, h.agent, "q", "client_id"); q.Enforced || q.Paused {
		t.Errorf("profile q (no budget_enforce): %+v; want not enforced", q)
	}
	// The lower limit is spent at once: said once, by the reload.
	if n := strings.Count(suiteLog.textFor(t), `"enforced_for":["p"],"message":"the IdP request budget is spent for this period; budget_enforce`); n != 1 {
		t.Errorf("the reload to a spent limit logs the 100%% line %d times; want 1:\n%s", n, suiteLog.textFor(t))
	}
	// p is paused: its refresh (at about 45 minutes of its 1-hour token)
	// does not come; q's does. Once p's token has expired, p asks again.
	h.clock.Advance(50 * time.Minute)
	if p, q := upstream(h.agent, "p"), upstream(h.agent, "q"); p != 1 || q != 2 {
		t.Errorf("50 minutes later: p made %d requests, q %d; want 1 (paused) and 2 (refreshed)", p, q)
	}
	h.clock.Advance(10 * time.Minute)
	h.mustToken(0)
	if p := upstream(h.agent, "p"); p != 2 {
		t.Errorf("with p's token expired: p made %d requests; want 2", p)
	}
}

// upstream is how many IdP requests profile made.
func upstream(a *agent.Agent, profile string) int {
	for _, st := range a.Status() {
		if st.Name == profile {
			return st.UpstreamRequests
		}
	}
	return -1
}

// TestBudgetSurvivesRestart: the count of the period, and the thresholds
// logged, are kept in the store: after a restart the agent goes on
// counting (and does not log the 80 % line again); a profile's budget
// removed from the configuration leaves no count behind.
func TestBudgetSurvivesRestart(t *testing.T) {
	e := newStoreEnv(t)
	withBudget := e.config("", "audience = \"api\"", "audience = \"api\"\nbudget = \"5/hour\"")
	a, stop := e.mustStart(withBudget)
	// Each a minute on, asking for more than the 1-hour token has left:
	// one request each.
	ask := func(a *agent.Agent, n int) {
		for range n {
			e.clock.Advance(time.Minute)
			if _, err := a.Token(t.Context(), self, "p", 59*time.Minute+30*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	ask(a, 4)
	stop()
	a, stop = e.mustStart(withBudget)
	if b := budgetOf(t, a, "p", "profile"); b.Used != 4 {
		t.Fatalf("after a restart: %+v; want the 4 requests counted before it", b)
	}
	ask(a, 1)
	if b := budgetOf(t, a, "p", "profile"); b.Used != 5 {
		t.Errorf("after one more request: %+v; want 5", b)
	}
	log := suiteLog.textFor(t)
	if n := strings.Count(log, "80% of the IdP request budget"); n != 1 {
		t.Errorf("the 80%% line is logged %d times over the two runs; want 1", n)
	}
	if n := strings.Count(log, "the IdP request budget is spent for this period"); n != 1 {
		t.Errorf("the 100%% line is logged %d times; want 1", n)
	}
	stop()
	// Without the budget, the count goes from the store: with it again,
	// in the same hour, the count starts from 0.
	_, stop = e.mustStart(e.config(""))
	stop()
	a, stop = e.mustStart(withBudget)
	if b := budgetOf(t, a, "p", "profile"); b.Used != 0 {
		t.Errorf("the budget removed, then configured again: %+v; want a count of 0 (the store dropped the old one)", b)
	}
	// The same through reloads: removed, the count goes from the store too.
	ask(a, 2)
	for _, text := range []string{e.config(""), withBudget} {
		cfg, err := config.ParseConfig([]byte(text), filepath.Join(e.dir, "agent.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	a, _ = e.mustStart(withBudget)
	if b := budgetOf(t, a, "p", "profile"); b.Used != 0 {
		t.Errorf("the budget removed by a reload and configured again, then a restart: %+v; want a count of 0", b)
	}
}
