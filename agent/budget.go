package agent

// Budgets: every token request sent to the IdP is counted against the
// profile's budget and its client id's, per calendar period (UTC); the
// 80 % and 100 % marks are logged once per period; with budget_enforce a
// spent budget pauses the requests a valid token makes unnecessary. The
// arithmetic is package budget's; here are the meters' locks, logs, the
// store and the fleet.

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/budget"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

// budgetRead is how old the fleet's count may be before a status read
// asks the fleet again (in the background: status never waits on etcd).
const budgetRead = 5 * time.Second

// Who a budget is for, as status says it.
const (
	budgetForProfile = "profile"
	budgetForClient  = "client_id"
)

// meters are the budget meters of one configuration: built by New and
// each Reload, which carries the counts of budgets that stay over.
type meters struct {
	byScope   map[string]*meter   // by meter.scope
	byProfile map[string][]*meter // the meters counting a profile's requests: its own, then its client id's
	enforce   map[string]bool     // profiles with budget_enforce
}

// meter is one budget and its count, under its own lock.
type meter struct {
	scope     string // "profile/NAME" or "client/ID": unique, the store's key
	kind      string // budgetForProfile or budgetForClient
	name      string // the profile's name or the client id
	fleetName string // the counter's name in the fleet, "" when counted on this host alone
	log       zerolog.Logger

	mu        sync.Mutex
	m         budget.Meter
	flushing  bool      // an add to (or a read of) the fleet's counter is under way
	fleetDown bool      // the last one failed: counted on this host meanwhile (logged once)
	lastRead  time.Time // when the fleet's count was last learned
	beyondLog time.Time // the period in which asking beyond a spent budget was logged
}

// newMeters builds the meters of cfg's budgets for the built profiles,
// keeping the counts of old's meters for the same budgets (a reload).
func (a *Agent) newMeters(cfg *config.Config, built map[string]*profile, old *meters) *meters {
	ms := &meters{byScope: map[string]*meter{}, byProfile: map[string][]*meter{}, enforce: map[string]bool{}}
	crossed := map[*meter]budget.Threshold{}
	add := func(scope, kind, name, fleetName string, b budget.Budget) *meter {
		if m := ms.byScope[scope]; m != nil {
			return m
		}
		if a.fleet == nil {
			fleetName = ""
		}
		if o := old.lookup(scope); o != nil && o.fleetName == fleetName {
			o.mu.Lock()
			same := o.m.Budget.Period == b.Period
			if same {
				// The same meter counts on (an add to the fleet under way
				// included), against the new limit.
				crossed[o] = o.m.Rebudget(b.Limit)
			}
			o.mu.Unlock()
			if same {
				ms.byScope[scope] = o
				return o
			}
		}
		m := &meter{scope: scope, kind: kind, name: name, fleetName: fleetName, m: budget.Meter{Budget: b}}
		m.log = a.log.With().Str("budget_for", kind).Str(map[string]string{budgetForProfile: "profile", budgetForClient: "client_id"}[kind], name).Logger()
		ms.byScope[scope] = m
		return m
	}
	for _, name := range slices.Sorted(maps.Keys(built)) {
		p := built[name]
		if b, ok := cfg.ProfileBudget(name); ok {
			fleetName := ""
			if p.fleetShared {
				// Shared by fingerprint, as the profile's tokens are.
				fleetName = "profile\x00" + p.fingerprint
			}
			ms.byProfile[name] = append(ms.byProfile[name], add("profile/"+name, budgetForProfile, name, fleetName, b))
		}
		if b, ok := cfg.ClientBudget(p.clientID); ok {
			ms.byProfile[name] = append(ms.byProfile[name], add("client/"+p.clientID, budgetForClient, p.clientID, "client\x00"+p.clientID, b))
		}
		ms.enforce[name] = cfg.Profiles[name].BudgetEnforce
	}
	for m, th := range crossed {
		a.noteCrossed(m, th, ms)
	}
	return ms
}

// replaceMeters installs next (a reload's) and forgets in the store the
// counts of the meters it no longer has: a budget removed, or counting
// another period now.
func (a *Agent) replaceMeters(next *meters) {
	prev := a.meters.Swap(next)
	if a.persister == nil || prev == nil {
		return
	}
	var gone []string
	for scope, m := range prev.byScope {
		if next.byScope[scope] != m {
			gone = append(gone, scope)
		}
	}
	a.persister.RemoveCounts(gone...)
}

func (ms *meters) lookup(scope string) *meter {
	if ms == nil {
		return nil
	}
	return ms.byScope[scope]
}

// countRequest counts a token request of profile sent at now, logs the
// thresholds it crosses and passes the count on to the fleet.
func (a *Agent) countRequest(profile string, now time.Time) {
	ms := a.meters.Load()
	for _, m := range ms.byProfile[profile] {
		m.mu.Lock()
		crossed := m.m.Count(now)
		m.mu.Unlock()
		a.noteCrossed(m, crossed, ms)
		a.persistMeter(m)
		a.sendCount(m, false)
	}
}

// noteCrossed logs a threshold crossed, once per period (the meter says
// when): what budget_enforce does about it for the profiles it counts.
func (a *Agent) noteCrossed(m *meter, crossed budget.Threshold, ms *meters) {
	if crossed == budget.None {
		return
	}
	m.mu.Lock()
	used, limit, period, end, counted := m.m.Used(), m.m.Budget.Limit, m.m.Budget.Period.String(), m.m.End(), m.countedLocked()
	m.mu.Unlock()
	ev := m.log.Warn()
	if crossed == budget.Spent {
		ev = m.log.Error()
	}
	ev = ev.Int64("used", used).Int64("limit", limit).Str("period", period).Time("period_ends", end).Str("counted", counted)
	var enforced []string
	for _, name := range slices.Sorted(maps.Keys(ms.byProfile)) {
		if ms.enforce[name] && slices.Contains(ms.byProfile[name], m) {
			enforced = append(enforced, name)
		}
	}
	switch {
	case crossed == budget.Warn:
		ev.Msg("80% of the IdP request budget is used in this period")
	case len(enforced) > 0:
		ev.Strs("enforced_for", enforced).Msg("the IdP request budget is spent for this period; budget_enforce: a profile holding a valid token serves it until it expires and asks the IdP no more until the period ends; without a valid token the IdP is still asked, so service continues")
	default:
		ev.Msg("the IdP request budget is spent for this period; not enforced (budget_enforce is off): requests go on, and the IdP may throttle or bill them")
	}
}

// budgetPause reports whether profile's requests to the IdP are paused
// at now (budget_enforce, and a budget counting it spent), and until
// when: the end of the latest spent period.
func (a *Agent) budgetPause(profile string, now time.Time) (until time.Time, paused bool) {
	ms := a.meters.Load()
	if !ms.enforce[profile] {
		return time.Time{}, false
	}
	for _, m := range ms.byProfile[profile] {
		m.mu.Lock()
		if m.m.Over(now) {
			paused, until = true, maxTime(until, m.m.End())
		}
		m.mu.Unlock()
	}
	return until, paused
}

// beyondBudget logs, once per period of each spent budget, that profile,
// with budget_enforce, asks the IdP beyond it because it holds no valid
// token.
func (a *Agent) beyondBudget(profile string, now time.Time) {
	ms := a.meters.Load()
	if !ms.enforce[profile] {
		return
	}
	for _, m := range ms.byProfile[profile] {
		m.mu.Lock()
		log := m.m.Over(now) && !m.beyondLog.Equal(m.m.Start)
		if log {
			m.beyondLog = m.m.Start
		}
		m.mu.Unlock()
		if log {
			m.log.Warn().Str("profile", profile).Msg("the IdP request budget is spent, but the profile holds no valid token: asking the IdP anyway, so that service continues")
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// countedLocked says whose requests the meter counts now (see
// ipc.BudgetInfo.Counted).
func (m *meter) countedLocked() string {
	switch {
	case m.fleetName == "":
		return "host"
	case m.fleetDown:
		return "host: fleet unavailable"
	}
	return "fleet"
}

// budgetStatus is what status shows of profile's budgets at now; a
// fleet count older than budgetRead is read again in the background.
func (a *Agent) budgetStatus(profile string, now time.Time) []ipc.BudgetInfo {
	ms := a.meters.Load()
	var out []ipc.BudgetInfo
	_, paused := a.budgetPause(profile, now)
	for _, m := range ms.byProfile[profile] {
		m.mu.Lock()
		if m.m.Roll(now) {
			m.lastRead = time.Time{}
		}
		info := ipc.BudgetInfo{
			For: m.kind, Limit: m.m.Budget.Limit, Period: m.m.Budget.Period.String(), PeriodEnd: m.m.End(),
			Used: m.m.Used(), Projected: m.m.Projection(now), Counted: m.countedLocked(),
			Enforced: ms.enforce[profile], Paused: paused && m.m.Over(now),
		}
		stale := m.fleetName != "" && now.Sub(m.lastRead) >= budgetRead
		m.mu.Unlock()
		if m.kind == budgetForClient {
			info.ClientID = ipc.SafeText(m.name)
		}
		out = append(out, info)
		if stale {
			a.sendCount(m, true)
		}
	}
	return out
}

// sendCount adds the meter's unsent requests to the fleet's counter (or,
// with read and none unsent, reads it), in the background: a fleet that
// is slow or down never holds up a fetch. One add per meter is under way
// at a time; what is counted meanwhile goes with the next. A failure is
// logged once, until an add succeeds; the requests stay counted here and
// are added later.
func (a *Agent) sendCount(m *meter, read bool) {
	m.mu.Lock()
	if m.fleetName == "" || m.flushing || (m.m.Unsent == 0 && !read) || a.ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	m.flushing = true
	period := m.m.Budget.Period
	m.mu.Unlock()
	go func() {
		defer a.notify()
		for {
			m.mu.Lock()
			now := a.clock.Now()
			m.m.Roll(now)
			n, start, end := m.m.Unsent, m.m.Start, m.m.End()
			if n == 0 && !read {
				m.flushing = false
				m.mu.Unlock()
				return
			}
			m.mu.Unlock()
			read = false
			// The counter outlives its period by an hour: an agent whose
			// clock lags a little still adds to the right one.
			total, err := a.fleet.Count(a.ctx, m.fleetName+"\x00"+period.Key(start), n, end.Add(time.Hour).Sub(now))
			m.mu.Lock()
			if err != nil {
				was := m.fleetDown
				m.fleetDown, m.flushing = true, false
				m.lastRead = a.clock.Now() // not asked again at every status read
				m.mu.Unlock()
				if !was && a.ctx.Err() == nil {
					m.log.Warn().Err(err).Msg("cannot count this budget in the fleet; counting this host's requests and adding them to the fleet's count when it answers again")
				}
				return
			}
			was := m.fleetDown
			m.fleetDown, m.lastRead = false, a.clock.Now()
			crossed := m.m.Sent(start, n, total)
			m.mu.Unlock()
			if was {
				m.log.Info().Int64("fleet_count", total).Msg("the fleet counts this budget again")
			}
			a.noteCrossed(m, crossed, a.meters.Load())
			a.persistMeter(m)
		}
	}()
}

// persistMeter notes the meter's count for the store (none with store =
// "memory"): a restart goes on counting where this run stopped.
func (a *Agent) persistMeter(m *meter) {
	if a.persister == nil {
		return
	}
	m.mu.Lock()
	c := store.Count{Scope: m.scope, Period: m.m.Budget.Period.Key(m.m.Start), Own: m.m.Own, Fleet: m.m.Fleet, Unsent: m.m.Unsent,
		Warned: m.m.Warned, Spent: m.m.Spent}
	m.mu.Unlock()
	a.persister.PutCount(c)
}

// adoptCounts restores the counts of the current periods from the store
// (a restart, or a store opened again) and returns the scopes whose
// counts no configured budget keeps, for deletion. A count of an ended
// period is written over by the next. What the last run counted but did
// not add to the fleet is added now.
func (a *Agent) adoptCounts(counts []store.Count) (stale []string) {
	ms := a.meters.Load()
	now := a.clock.Now()
	for _, c := range counts {
		m := ms.byScope[c.Scope]
		if m == nil {
			stale = append(stale, c.Scope)
			continue
		}
		m.mu.Lock()
		m.m.Roll(now)
		if c.Period == m.m.Budget.Period.Key(m.m.Start) {
			m.m.Own, m.m.Fleet, m.m.Unsent = max(m.m.Own, c.Own), max(m.m.Fleet, c.Fleet), max(m.m.Unsent, c.Unsent)
			m.m.Warned, m.m.Spent = m.m.Warned || c.Warned, m.m.Spent || c.Spent
		}
		m.mu.Unlock()
		a.sendCount(m, false)
	}
	return stale
}
