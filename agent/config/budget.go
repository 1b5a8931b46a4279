package config

import (
	"fmt"
	"maps"
	"slices"

	"github.com/tokenagent/tokenagent/agent/budget"
	"github.com/tokenagent/tokenagent/ipc"
)

// ProfileBudget is the profile's own budget (ok false: none).
func (c *Config) ProfileBudget(name string) (b budget.Budget, ok bool) {
	p := c.Profiles[name]
	if p == nil || p.Budget == "" {
		return budget.Budget{}, false
	}
	b, err := budget.Parse(p.Budget)
	return b, err == nil
}

// ClientBudget is the [budgets] entry of clientID (ok false: none).
func (c *Config) ClientBudget(clientID string) (b budget.Budget, ok bool) {
	text, set := c.Budgets[clientID]
	if !set {
		return budget.Budget{}, false
	}
	b, err := budget.Parse(text)
	return b, err == nil
}

// validateBudgets checks every budget and budget_enforce. The errors
// wrap budget.ErrNumber, ErrPeriod or ErrZero and name the profile or
// the client id.
func (c *Config) validateBudgets() []error {
	var errs []error
	for _, name := range c.ProfileNames() {
		p := c.Profiles[name]
		if p.Budget != "" {
			if _, err := budget.Parse(p.Budget); err != nil {
				errs = append(errs, fmt.Errorf("config %s: profile %q: budget %w", c.path, name, err))
			}
		}
		if p.BudgetEnforce && p.Budget == "" && p.ClientID != "" && c.Budgets[p.ClientID] == "" {
			errs = append(errs, fmt.Errorf("config %s: profile %q: budget_enforce applies to a budget, and neither the profile's budget nor a [budgets] entry for its client_id %q is set; set one, or remove budget_enforce",
				c.path, name, ipc.SafeText(p.ClientID)))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(c.Budgets)) {
		if id == "" {
			errs = append(errs, fmt.Errorf("config %s: [budgets]: an entry with an empty client id; name the client id, as a profile's client_id says it", c.path))
			continue
		}
		if _, err := budget.Parse(c.Budgets[id]); err != nil {
			errs = append(errs, fmt.Errorf("config %s: [budgets] client id %q: %w", c.path, ipc.SafeText(id), err))
		}
	}
	return errs
}

// budgetWarnings names [budgets] entries no profile's client_id names
// (a typo, or a client id that only a service-account key gives).
func (c *Config) budgetWarnings() []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(c.Budgets)) {
		if !slices.ContainsFunc(c.ProfileNames(), func(name string) bool { return c.Profiles[name].ClientID == id }) {
			out = append(out, fmt.Sprintf("[budgets] client id %q is no profile's client_id: it counts nothing unless a service-account key gives a profile that client", ipc.SafeText(id)))
		}
	}
	return out
}
