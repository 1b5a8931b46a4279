// Package ipc is what both ends of tokenagent's socket share: the wire
// types, the error codes and the sentinel errors they stand for, where
// the socket lives, who a caller is, and the token fingerprint that logs
// carry instead of tokens.
//
// The protocol is plain HTTP/1.1 over a Unix socket, so that
//
//	curl --unix-socket /run/tokenagent/agent.sock http://tokenagent/v1/tokens/NAME
//
// works. The server is package ipc/localapi; the Go client is package
// clientlib. This package is deliberately small (no net/http, no
// third-party imports): the CLI links it, and every CLI start pays for
// what it links.
package ipc

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ValidProfileName reports whether name is a profile name: 1 to 64 ASCII
// letters, digits, '.', '_' or '-', starting with a letter or digit. The
// configuration and the server apply the same rule. (A function, not a
// regexp: every CLI start would pay for compiling one.)
func ValidProfileName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// MaxMinValid bounds the min_valid a caller may ask for.
const MaxMinValid = 24 * time.Hour

// ParseMinValid reads a min_valid as the socket's query and the CLI's
// --min-valid both take it: a Go duration ("90s", "2m") or whole seconds
// ("90"), from 0 to MaxMinValid. Anything else, negative values included,
// gets the same message everywhere.
func ParseMinValid(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, serr := strconv.ParseUint(v, 10, 32)
		if serr != nil {
			return 0, fmt.Errorf("min_valid %q: use a duration such as 60s or 5m, or whole seconds", v)
		}
		d = time.Duration(secs) * time.Second
	}
	if d < 0 || d > MaxMinValid {
		return 0, fmt.Errorf("min_valid %q: must be between 0 and %v", v, MaxMinValid)
	}
	return d, nil
}

// Host is the only Host header the server accepts.
const Host = "tokenagent"

// Paths.
const (
	PathTokens   = "/v1/tokens/" // + {profile}, + {profile}/refresh
	PathProfiles = "/v1/profiles"
	PathHealth   = "/v1/health"
	PathMetrics  = "/metrics"
	PathDebug    = "/debug/pprof/" // + a runtime/pprof profile name; root and the agent's user only
)

// TokenResponse is the answer to GET /v1/tokens/{profile} and to a refresh.
type TokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
	// ExpiresIn is whole seconds left when the answer was made.
	ExpiresIn int64  `json:"expires_in"`
	Scope     string `json:"scope,omitempty"`
}

// RefreshRequest is the optional body of POST /v1/tokens/{profile}/refresh.
type RefreshRequest struct {
	// RejectedSHA256 is the hex SHA-256 of a token an API refused. The
	// agent fetches a new token only if that one is still current.
	RejectedSHA256 string `json:"rejected_sha256,omitempty"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	// Error is a code: one of the Code* constants, or the identity
	// provider's own RFC 6749 code (invalid_client, …) with status 502.
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// Error codes of the agent's own.
const (
	CodeInvalidRequest = "invalid_request"         // 400
	CodeMinValid       = "min_valid_unsatisfiable" // 400
	CodeForbidden      = "forbidden"               // 403
	CodeUnknownProfile = "unknown_profile"         // 404
	CodeNotFound       = "not_found"               // 404 (no such endpoint)
	CodeMethod         = "method_not_allowed"      // 405
	CodeIdPError       = "idp_error"               // 502 when the IdP sent no code
	CodeIdPUnavailable = "idp_unavailable"         // 503
	CodeOverloaded     = "too_many_connections"    // 503
	CodeShuttingDown   = "shutting_down"           // 503
	CodeTimeout        = "timeout"                 // 504
	CodeInternal       = "internal_error"          // 500
)

// ProfileInfo is one entry of GET /v1/profiles: what the caller may know
// about a profile it is allowed to use. Never a token or a secret.
type ProfileInfo struct {
	Name             string    `json:"name"`
	ExpiresAt        time.Time `json:"expires_at,omitzero"`
	LastRefresh      time.Time `json:"last_refresh,omitzero"`
	LastError        string    `json:"last_error,omitempty"`
	NextAttempt      time.Time `json:"next_attempt,omitzero"`
	UpstreamRequests int       `json:"upstream_requests"`
	Idle             bool      `json:"idle,omitempty"`
	// Audience and Scopes are what the profile's tokens are for, as a
	// client pointed at the token endpoint must ask for them.
	Audience string   `json:"audience,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	// Origin says where the held token came from: "idp" (fetched by this
	// agent), "store" (loaded from the store at start) or "fleet" (fetched
	// by another host's agent); ObtainedAt says when it was fetched.
	Origin     string    `json:"origin,omitempty"`
	ObtainedAt time.Time `json:"obtained_at,omitzero"`
	// Fleet is "fleet", "local" (the profile says fleet = false), "fleet
	// unavailable", "fleet unavailable: reads only" (etcd answers reads but
	// refuses writes: out of space) or "local: wrong seal_key" when the agent shares tokens
	// with other hosts; MintedBy names the host whose agent fetched the
	// held token.
	Fleet    string `json:"fleet,omitempty"`
	MintedBy string `json:"minted_by,omitempty"`
	// ClockSkewSeconds is how far the last token's JWT exp lay from the
	// IdP's expires_in counted on the agent's clock, when that is more
	// than 30 s: the host's and the IdP's clocks disagree.
	ClockSkewSeconds float64 `json:"clock_skew_seconds,omitempty"`
	// SinkExpiresAt, for a profile with file sinks, is when the token its
	// files hold expires: the earliest over its files, as this agent last
	// wrote them (zero: none written yet). SinkStale is set once that has
	// passed: the IdP could not give a new token in time, and the files
	// keep the last one (never emptied).
	SinkExpiresAt time.Time `json:"sink_expires_at,omitzero"`
	SinkStale     bool      `json:"sink_stale,omitempty"`
	// GCPMetadata is the address ("127.0.0.1:PORT") of the Google
	// metadata server serving this profile (gcp_metadata), for
	// GCE_METADATA_HOST; "" when it has none.
	GCPMetadata string `json:"gcp_metadata,omitempty"`
	// AssertionExpiresAt, for a profile with auth = "client_assertion",
	// is the exp of the platform's token the agent last read from its
	// file (never the token); zero when none could be read.
	AssertionExpiresAt time.Time `json:"assertion_expires_at,omitzero"`
	// Budgets are the budgets that count the profile's IdP requests: its
	// own (budget) and its client id's ([budgets]).
	Budgets []BudgetInfo `json:"budgets,omitempty"`
	// Callers are the callers this agent lately admitted to the profile,
	// newest first, each with the allow rule that admitted it: told to
	// root and the agent's user only.
	Callers []RecentCaller `json:"callers,omitempty"`
}

// RecentCaller is one user a profile admitted: its uid, the rule that
// admitted it ("root", "agent user", "allow_uids", "allow_groups",
// "allow[N]"), the pid of its latest process and when it last asked.
type RecentCaller struct {
	UID  uint32    `json:"uid"`
	PID  int32     `json:"pid,omitempty"`
	Rule string    `json:"rule"`
	Last time.Time `json:"last"`
}

// BudgetInfo is one budget of IdP token requests in its current
// calendar period (UTC), as GET /v1/profiles shows it.
type BudgetInfo struct {
	// For is "profile" (the profile's own budget) or "client_id" (its
	// client id's, shared by every profile of that client: ClientID).
	For      string `json:"for"`
	ClientID string `json:"client_id,omitempty"`
	// Limit requests per Period ("hour", "day" or "month"), which ends
	// at PeriodEnd.
	Limit     int64     `json:"limit"`
	Period    string    `json:"period"`
	PeriodEnd time.Time `json:"period_end"`
	// Used is the period's count so far; Projected what it will be at
	// PeriodEnd at the rate seen so far.
	Used      int64 `json:"used"`
	Projected int64 `json:"projected"`
	// Counted says whose requests Used counts: "fleet" (every agent that
	// shares it, through etcd), "host" (this agent's), or "host: fleet
	// unavailable" (this agent's since the fleet last answered, added to
	// the fleet's count as last read).
	Counted string `json:"counted"`
	// Enforced: budget_enforce is set; Paused: the budget is spent, and
	// the profile serves its token until it expires instead of asking.
	Enforced bool `json:"enforced,omitempty"`
	Paused   bool `json:"paused,omitempty"`
}

// ProfilesResponse is the answer to GET /v1/profiles.
type ProfilesResponse struct {
	Profiles []ProfileInfo `json:"profiles"`
}

// LocalCA is what a caller of the agent's HTTPS doors trusts, as files
// the agent publishes (all public).
type LocalCA struct {
	// Cert is the local CA's certificate (PEM): what NODE_EXTRA_CA_CERTS
	// adds to Node's CAs.
	Cert string `json:"cert"`
	// Bundle is the host's CA certificates and the local CA's (PEM):
	// for REQUESTS_CA_BUNDLE and SSL_CERT_FILE, which replace the CAs.
	Bundle string `json:"bundle"`
	// TrustStore is Bundle as a PKCS #12 trust store for Java
	// (javax.net.ssl.trustStore), with TrustStorePassword.
	TrustStore         string `json:"trust_store"`
	TrustStorePassword string `json:"trust_store_password"`
}

// HealthResponse is the answer to GET /v1/health.
type HealthResponse struct {
	Status string `json:"status"` // "ok"
	// TokenEndpoint is the loopback OAuth 2.0 token endpoint's URL, when
	// token_endpoint is set.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// TokenEndpointHTTPS is the same endpoint's https:// URL, when
	// token_endpoint_https is set; LocalCA names the files that make a
	// caller trust it.
	TokenEndpointHTTPS string   `json:"token_endpoint_https,omitempty"`
	LocalCA            *LocalCA `json:"local_ca,omitempty"`
	// AzureIdentity is the Azure managed-identity endpoint, when
	// azure_identity_endpoint is set.
	AzureIdentity *AzureIdentity `json:"azure_identity,omitempty"`
	// Store is the token store's state.
	Store *StoreHealth `json:"store,omitempty"`
	// Degraded names the caller's profiles that cannot serve a token now
	// (the last fetch failed and no valid token is held), or whose file
	// sinks hold an expired token (ProfileInfo.SinkStale). The agent itself
	// is alive: the answer is still 200.
	Degraded []string `json:"degraded,omitempty"`
	// Agent says which agent this is and since when it runs.
	Agent *AgentInfo `json:"agent,omitempty"`
	// Doors are the TCP doors' addresses and whether each is bound. A
	// door that is down (another process holds its port) is retried;
	// Status stays "ok": the agent answers, and restarting it would not
	// free the port.
	Doors []DoorHealth `json:"doors,omitempty"`
}

// AzureIdentity is where Azure SDKs ask the agent for tokens (the App
// Service and IMDS managed-identity protocols), as /v1/health tells it.
type AzureIdentity struct {
	// Endpoint is the App Service protocol's URL (IDENTITY_ENDPOINT).
	Endpoint string `json:"endpoint"`
	// IMDSHost is the IMDS protocol's authority on the same listener
	// (AZURE_POD_IDENTITY_AUTHORITY_HOST).
	IMDSHost string `json:"imds_host"`
	// Header is the agent's X-IDENTITY-HEADER secret (IDENTITY_HEADER),
	// told only to callers who may use some profile; "" to others.
	Header string `json:"header,omitempty"`
}

// DoorHealth is one address of a TCP door.
type DoorHealth struct {
	// Door is the setting: "token_endpoint" or "metrics_listen".
	Door    string `json:"door"`
	Address string `json:"address"`
	// State is "up" (bound and serving) or "down" (not bound: Error says
	// why and who holds the port; the agent retries).
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// AgentInfo describes the running agent.
type AgentInfo struct {
	Version    string    `json:"version"`
	Config     string    `json:"config,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	ReloadedAt time.Time `json:"reloaded_at,omitzero"`
}

// StoreHealth is the token store's state. The store is a cache: in every
// state, tokens are served from memory.
type StoreHealth struct {
	Path string `json:"path,omitempty"`
	// State is "ok", "memory" (store = "memory"), "failing" (the last
	// write failed), "stalled" (a write has not returned for seconds: a
	// hung disk) or "unavailable" (not open: it failed at start, or its
	// file was deleted; the agent keeps trying).
	State string `json:"state"`
	// Error is the last failure, when State is not ok.
	Error         string `json:"error,omitempty"`
	Stalls        uint64 `json:"stalls"`
	WriteFailures uint64 `json:"write_failures"`
	PendingWrites int    `json:"pending_writes"`
}

// ValidToken reports whether s is an RFC 6750 b64token — letters, digits,
// "-", ".", "_", "~", "+", "/", then optional "=" padding — and so can go
// into an Authorization header, a shell line or a curl config as it is.
// The agent refuses any other token from an IdP; clients refuse any other
// token from an agent.
func ValidToken(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// SafeText is s without what could make a terminal or a log line show
// something other than it says: C0 and C1 control characters (escape
// sequences, newlines), format characters such as bidi overrides, and
// invalid UTF-8. Text from outside — an IdP's error, a peer's program
// name, an agent's answer — goes through it before it is shown.
func SafeText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
}

// FleetStats counts a profile's work through the fleet: records read,
// tokens taken from it instead of the IdP, lock acquisitions tried,
// tokens this host fetched and shared, and fetches made for this host
// alone (the fleet failed, or its lock holder was slow). The engine keeps
// them; /metrics writes them.
type FleetStats struct {
	Reads, Hits, LockWaits, Mints, Fallbacks uint64
}
