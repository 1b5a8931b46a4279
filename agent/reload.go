package agent

import (
	"fmt"
	"slices"

	"github.com/tokenagent/tokenagent/agent/config"
)

// Reload applies a new configuration, reading every secret and key again.
// Profiles whose settings (secrets and keys included) are unchanged keep
// their tokens and timers but forget any held IdP error (the fix is often
// at the IdP); changed ones start afresh — with their current token when it
// was issued for the same endpoint, client, scopes, audience and resource; removed ones stop and their stored tokens are deleted. If any
// profile cannot be built the agent keeps its old configuration entirely.
// Store and socket settings are read only at start.
func (a *Agent) Reload(cfg *config.Config) (ReloadSummary, error) {
	var sum ReloadSummary
	built, err := buildProfiles(cfg, a.httpClient, a.clock.Now)
	if err != nil {
		return sum, fmt.Errorf("reload rejected, the running configuration stays: %w", err)
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	old := *a.sources.Load()
	// Budgets first: an unchanged profile (a budget is not part of its
	// settings) counts against the new ones from now on.
	a.replaceMeters(a.newMeters(cfg, built, a.meters.Load()))
	next := make(map[string]*source, len(built))
	for name, p := range built {
		prev := old[name]
		switch {
		case prev == nil:
			next[name] = newSource(a, p)
			next[name].watchFleet()
			sum.Added = append(sum.Added, name)
		case prev.prof.settings == p.settings:
			// Its secrets read the same, but the fix for a refusal is often
			// at the IdP: a reload is the operator's "try again now".
			prev.releaseHold()
			next[name] = prev
			sum.Unchanged = append(sum.Unchanged, name)
		default:
			s := newSource(a, p)
			s.watchFleet()
			if c := prev.cur.Load(); c != nil && prev.prof.fingerprint == p.fingerprint {
				s.cur.Store(c)
				s.writeSinks(c.Token) // a sink may be new
			}
			next[name] = s
			sum.Changed = append(sum.Changed, name)
		}
	}
	var removed []string
	for name, s := range old {
		if next[name] != s {
			s.close()
			// Its files that the new configuration does not keep go too,
			// once a sink write under way has finished.
			s.sinkMu.Lock()
			for _, sk := range s.prof.sinks {
				if n := next[name]; n == nil || !slices.ContainsFunc(n.prof.sinks, func(o sink) bool { return o.path == sk.path }) {
					if err := sk.remove(); err != nil {
						a.log.Warn().Err(err).Str("profile", name).Msg("cannot remove the token file of a removed file sink")
					}
				}
			}
			s.sinkMu.Unlock()
		}
		if _, ok := next[name]; !ok {
			removed = append(removed, name)
		}
	}
	a.sources.Store(&next)
	// Added and changed profiles with file sinks are kept current at once,
	// as at start.
	for _, name := range slices.Concat(sum.Added, sum.Changed) {
		next[name].demand()
	}
	sum.Removed = removed
	if a.persister != nil {
		a.persister.Remove(removed...)
	}
	for _, list := range [][]string{sum.Added, sum.Changed, sum.Unchanged, sum.Removed} {
		slices.Sort(list)
	}
	a.log.Info().Strs("added", sum.Added).Strs("changed", sum.Changed).Strs("removed", sum.Removed).
		Int("unchanged", len(sum.Unchanged)).Msg("configuration reloaded")
	return sum, nil
}

// ReloadSummary says what a reload did to each profile.
type ReloadSummary struct {
	Added, Changed, Unchanged, Removed []string
}
