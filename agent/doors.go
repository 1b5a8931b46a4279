package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/metrics"
)

// What the engine answers each door: Match for the token doors,
// ProfileInfos for the socket's listings, ProfileStats for /metrics.

// FleetStats is a profile's fleet counters; the type is the wire's (and
// /metrics'), one type under two names.
type FleetStats = ipc.FleetStats

// doorIndex is the profiles' static settings as the token doors look
// them up, for one snapshot of the profiles: built on the first Match
// after New or a Reload, never per request.
type doorIndex struct {
	sources    *map[string]*source
	byClientID map[string][]*source // sorted by profile name
	// byResource are the profiles whose tokens are for one resource, by
	// resourceKey: an Entra scope R/.default, or an audience or single
	// RFC 8707 resource R. Sorted by profile name.
	byResource map[string][]*source
	// anyAccess is the union of every profile's allow list: a caller it
	// does not admit may use no profile.
	anyAccess access
}

// doorIndexFor returns the index of the current profiles.
func (a *Agent) doorIndexFor() *doorIndex {
	sources := a.sources.Load()
	if idx := a.doors.Load(); idx != nil && idx.sources == sources {
		return idx
	}
	idx := &doorIndex{sources: sources, byClientID: map[string][]*source{}, byResource: map[string][]*source{}}
	uids, gids := map[uint32]bool{}, map[uint32]bool{}
	var entries []entry
	for _, s := range *sources {
		entries = append(entries, s.prof.access.Entries...)
		idx.byClientID[s.prof.clientID] = append(idx.byClientID[s.prof.clientID], s)
		for _, r := range profileResources(s.prof) {
			idx.byResource[r] = append(idx.byResource[r], s)
		}
		for _, uid := range s.prof.access.UIDs {
			uids[uid] = true
		}
		for _, gid := range s.prof.access.GIDs {
			gids[gid] = true
		}
	}
	idx.anyAccess = access{UIDs: slices.Sorted(maps.Keys(uids)), GIDs: slices.Sorted(maps.Keys(gids)), Entries: entries}
	for _, byKey := range []map[string][]*source{idx.byClientID, idx.byResource} {
		for _, list := range byKey {
			slices.SortFunc(list, func(x, y *source) int { return strings.Compare(x.prof.name, y.prof.name) })
		}
	}
	a.doors.Store(idx) // a racing Match may store an equal index: harmless
	return idx
}

// Match picks the one profile an OAuth client means: q.ClientID names a
// profile, or is the client id of exactly one profile whose tokens
// satisfy the requested scope (a subset), audience and resource (equal).
// A token minted for other parameters is never handed out. caller is who
// the kernel says is asking; nil when it cannot say (another network
// namespace), and then only a profile's local_secret vouches for the
// caller. The cost does not grow with the number of profiles.
//
// Errors are *ipc.Error: ErrUnknownProfile (Denied: an OAuth
// invalid_client) when no profile by that name or client id is the
// caller's; ErrBadRequest with Code invalid_request (more than one
// fits), invalid_scope or invalid_target.
func (a *Agent) Match(caller *ipc.Caller, q ipc.ClientMatch) (string, error) {
	idx := a.doorIndexFor()
	var whys []string
	usable := func(s *source) bool {
		if caller == nil {
			return secretMatches(s.prof, q.Secret)
		}
		rule, why := s.prof.access.decide(*caller, a.uid)
		if rule == "" {
			whys = append(whys, fmt.Sprintf("profile %q: %s", s.prof.name, why))
		}
		return rule != ""
	}
	var named []*source
	if s := (*idx.sources)[q.ClientID]; s != nil && usable(s) {
		named = []*source{s}
	} else {
		for _, s := range idx.byClientID[q.ClientID] {
			if usable(s) {
				named = append(named, s)
			}
		}
	}
	if len(named) == 0 {
		return "", &ipc.Error{Kind: ipc.ErrUnknownProfile, Denied: true, Why: strings.Join(whys, "; "),
			Description: fmt.Sprintf("no profile %q (by name or client id) that this caller may use", q.ClientID)}
	}
	var fits []string
	scopeMiss := false
	for _, s := range named {
		switch {
		case !targetFits(s.prof, q):
		case !scopeFits(s.prof, q):
			scopeMiss = true
		default:
			fits = append(fits, s.prof.name)
		}
	}
	switch {
	case len(fits) == 1:
		return fits[0], nil
	case len(fits) > 1:
		return "", &ipc.Error{Kind: ipc.ErrBadRequest, Code: "invalid_request",
			Description: fmt.Sprintf("client id %q fits profiles %s; use a profile name as client_id", q.ClientID, strings.Join(fits, ", "))}
	case scopeMiss:
		return "", &ipc.Error{Kind: ipc.ErrBadRequest, Code: "invalid_scope", Description: "the requested scope is not a subset of the profile's scopes"}
	}
	return "", &ipc.Error{Kind: ipc.ErrBadRequest, Code: "invalid_target", Description: "the requested audience or resource is not the profile's"}
}

// ClientID is the profile's client at the IdP — a service account's
// client_email with auth = "jwt_bearer" — for the metadata door, which
// names it as the account's email; "" when there is no such profile.
func (a *Agent) ClientID(profile string) string {
	if s := (*a.doorIndexFor().sources)[profile]; s != nil {
		return s.prof.clientID
	}
	return ""
}

// MatchResource picks the one profile a cloud SDK means when it asks for
// a token for q.Resource (Azure's managed identity protocols): among the
// profiles caller may use, the one whose Entra scope is
// Resource/.default, or whose audience or only resource is Resource — a
// trailing slash on either side aside. q.ClientID (a profile's name or
// IdP client id) or q.ResourceID (whose last path segment is a profile's
// name) narrow the choice, as a user-assigned identity's do on Azure.
// It returns the profile's name and IdP client id. The cost does not
// grow with the number of profiles.
//
// Errors are *ipc.Error: ErrUnknownProfile (Denied) when no profile fits
// (a denied profile is the same answer as none), ErrBadRequest when more
// than one does.
func (a *Agent) MatchResource(caller ipc.Caller, q ipc.ResourceMatch) (profile, clientID string, err error) {
	idx := a.doorIndexFor()
	var fits []*source
	var whys []string
	for _, s := range idx.byResource[resourceKey(q.Resource)] {
		if rule, why := s.prof.access.decide(caller, a.uid); rule == "" {
			whys = append(whys, fmt.Sprintf("profile %q: %s", s.prof.name, why))
			continue
		}
		if q.ClientID != "" && q.ClientID != s.prof.name && q.ClientID != s.prof.clientID {
			continue
		}
		if q.ResourceID != "" && !resourceIDNames(q.ResourceID, s.prof.name) {
			continue
		}
		fits = append(fits, s)
	}
	switch len(fits) {
	case 1:
		return fits[0].prof.name, fits[0].prof.clientID, nil
	case 0:
		return "", "", &ipc.Error{Kind: ipc.ErrUnknownProfile, Denied: true, Why: strings.Join(whys, "; "),
			Description: fmt.Sprintf("no profile for resource %q that this caller may use", ipc.SafeText(q.Resource))}
	}
	names := make([]string, len(fits))
	for i, s := range fits {
		names[i] = s.prof.name
	}
	return "", "", &ipc.Error{Kind: ipc.ErrBadRequest, Code: "invalid_request",
		Description: fmt.Sprintf("resource %q fits profiles %s; name one as client_id", ipc.SafeText(q.Resource), strings.Join(names, ", "))}
}

// profileResources are the resources a profile's tokens are for, as
// resourceKeys: its Entra scopes' (R/.default), its audience, and its
// RFC 8707 resource when it names one.
func profileResources(p *profile) []string {
	var out []string
	for _, sc := range p.scopes {
		if r, ok := strings.CutSuffix(sc, "/.default"); ok {
			out = append(out, resourceKey(r))
		}
	}
	if p.audience != "" {
		out = append(out, resourceKey(p.audience))
	}
	if len(p.resource) == 1 {
		out = append(out, resourceKey(p.resource[0]))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// resourceKey is a resource as the doors compare it: without trailing
// slashes ("https://management.azure.com/" is "https://management.azure.com").
func resourceKey(r string) string { return strings.TrimRight(r, "/") }

// resourceIDNames reports whether an Azure resource id
// (/subscriptions/…/userAssignedIdentities/NAME) names the profile: its
// last path segment is the profile's name.
func resourceIDNames(id, profile string) bool {
	id = strings.TrimRight(id, "/")
	return id[strings.LastIndexByte(id, '/')+1:] == profile
}

// MayUseAny reports whether caller may use at least one profile: the
// socket asks it of every request of a caller who is neither root nor
// the agent's user, so it answers from the union of the allow lists, not
// by visiting every profile.
func (a *Agent) MayUseAny(caller ipc.Caller) bool {
	idx := a.doorIndexFor()
	return len(*idx.sources) > 0 && idx.anyAccess.allows(caller, a.uid)
}

// PinsProcesses reports whether some profile has a process selector
// (unit, cgroup, exe, sha256): then the doors pin each caller's process
// as it connects (door.ListenConfig.Pin).
func (a *Agent) PinsProcesses() bool { return a.doorIndexFor().anyAccess.pinsProcesses() }

// secretMatches reports, in constant time, whether secret is the
// profile's local_secret (false when it has none).
func secretMatches(p *profile, secret string) bool {
	if p.localSecret == ([32]byte{}) {
		return false
	}
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], p.localSecret[:]) == 1
}

func scopeFits(p *profile, q ipc.ClientMatch) bool {
	for _, sc := range q.Scopes {
		if !slices.Contains(p.scopes, sc) {
			return false
		}
	}
	return true
}

func targetFits(p *profile, q ipc.ClientMatch) bool {
	if q.Audience != "" && q.Audience != p.audience {
		return false
	}
	if len(q.Resource) > 0 {
		a, b := slices.Clone(q.Resource), slices.Clone(p.resource)
		slices.Sort(a)
		slices.Sort(b)
		return slices.Equal(slices.Compact(a), slices.Compact(b))
	}
	return true
}

// ProfileInfos lists what caller may know of the profiles it may use,
// sorted by name, as the socket's /v1/profiles and /v1/health tell it.
func (a *Agent) ProfileInfos(caller ipc.Caller) []ipc.ProfileInfo {
	all := a.Profiles(caller)
	out := make([]ipc.ProfileInfo, len(all))
	for i, st := range all {
		out[i] = st.ProfileInfo
		if caller.UID != 0 && caller.UID != a.uid {
			out[i].Callers = nil // who else uses a profile is root's to know
		}
	}
	return out
}

// ProfileStats are every profile's counters, for /metrics
// (metrics.Collector).
func (a *Agent) ProfileStats() []metrics.ProfileStats {
	now := a.clock.Now()
	all := a.Status()
	out := make([]metrics.ProfileStats, 0, len(all))
	for _, st := range all {
		out = append(out, metrics.ProfileStats{
			Profile: st.Name, Results: st.Results,
			LatencyBuckets: LatencyBuckets(), LatencyCounts: st.Latency.Counts[:], LatencySum: st.Latency.Sum,
			Minted: st.Minted, Coalesced: st.Coalesced, Served: st.Served,
			ExpiresIn: st.ExpiresAt.Sub(now).Seconds(), HasToken: !st.ExpiresAt.IsZero(), LastSuccess: st.LastRefresh,
			Fleet: st.Fleet, FleetStats: st.FleetStats, SinkExpiry: st.SinkExpiresAt, Budgets: st.Budgets,
		})
	}
	return out
}
