package clientlib

import (
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// The errors a caller branches on. They are the values package ipc
// defines, so that errors.Is gives the same answer whether an error came
// over the socket (from this package) or from the agent's engine in
// process.
var (
	// ErrAgentUnavailable: nothing answers on the socket, or the agent is
	// at its connection cap, or it is not a server this client trusts.
	ErrAgentUnavailable = ipc.ErrAgentUnavailable
	// ErrShuttingDown: the agent is stopping.
	ErrShuttingDown = ipc.ErrShuttingDown
	// ErrUnknownProfile: the agent has no such profile for this process's
	// user: none of that name, or its allow lists leave the user out. The
	// agent gives both the same answer, so that nobody learns the names
	// of profiles they may not use.
	ErrUnknownProfile = ipc.ErrUnknownProfile
	// ErrForbidden: this process's user may not use the agent's socket or
	// the endpoint (the socket's mode, a metrics request from a user who
	// is neither root nor the agent's). A profile it may not use is
	// ErrUnknownProfile.
	ErrForbidden = ipc.ErrForbidden
	// ErrNotFound: the agent has no such endpoint, or not with that method
	// (it is older or newer than this library).
	ErrNotFound = ipc.ErrNotFound
	// ErrMinValid: the IdP's tokens do not live as long as WithMinValid
	// (or the profile's min_valid) asks; retrying cannot help.
	ErrMinValid = ipc.ErrMinValid
	// ErrIdPRefused: the identity provider refused the agent; Error.Code
	// is its RFC 6749 code (invalid_client, …).
	ErrIdPRefused = ipc.ErrIdPRefused
	// ErrIdPUnavailable: the identity provider is unreachable and the agent
	// holds no valid token; Error.RetryAfter says when it asks again.
	ErrIdPUnavailable = ipc.ErrIdPUnavailable
	// ErrTimeout: the agent got no token before the request's deadline.
	ErrTimeout = ipc.ErrTimeout
	// ErrBadRequest: the agent did not understand the request.
	ErrBadRequest = ipc.ErrBadRequest
)

// Error is every failure the agent reports, and every failure to reach
// it. Test it with errors.Is against the sentinels above (Error unwraps
// to its Kind) and read its fields with errors.As.
type Error struct {
	// Kind is one of the sentinel errors above; nil for an answer this
	// library cannot place (an internal error of the agent).
	Kind error
	// Code is the wire code the agent sent: its own (unknown_profile, …)
	// or, with ErrIdPRefused, the identity provider's RFC 6749 code
	// (invalid_client, …). "" when the failure never reached the agent.
	Code string
	// Description says what happened and what to do. It never holds a
	// token or a secret.
	Description string
	// RetryAfter, when positive, is how long until the agent asks the
	// identity provider again.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	switch {
	case e.Kind == nil && e.Description == "":
		return "agent error " + e.Code
	case e.Kind == nil:
		return e.Description
	case e.Description == "":
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Description
}

// Unwrap makes errors.Is see the Kind.
func (e *Error) Unwrap() error { return e.Kind }

// LocalCA is what a caller of the agent's HTTPS doors trusts: files the
// agent publishes (all public).
type LocalCA struct {
	// Cert is the local CA's certificate (PEM; NODE_EXTRA_CA_CERTS).
	Cert string `json:"cert"`
	// Bundle is the host's CAs and the local CA's (PEM; REQUESTS_CA_BUNDLE,
	// SSL_CERT_FILE).
	Bundle string `json:"bundle"`
	// TrustStore is Bundle as a PKCS #12 trust store for Java, with
	// TrustStorePassword.
	TrustStore         string `json:"trust_store"`
	TrustStorePassword string `json:"trust_store_password"`
}

// AzureIdentity is where Azure SDKs ask the agent for tokens.
type AzureIdentity struct {
	// Endpoint is the App Service protocol's URL (IDENTITY_ENDPOINT).
	Endpoint string `json:"endpoint"`
	// IMDSHost is the IMDS protocol's authority on the same listener
	// (AZURE_POD_IDENTITY_AUTHORITY_HOST).
	IMDSHost string `json:"imds_host"`
	// Header is the X-IDENTITY-HEADER secret (IDENTITY_HEADER); "" unless
	// this user may use some profile.
	Header string `json:"header,omitempty"`
}

// Health is what the agent says about itself (GET /v1/health).
type Health struct {
	// Status is "ok" whenever the agent answers.
	Status string `json:"status"`
	// TokenEndpoint is the URL of the agent's loopback OAuth 2.0 token
	// endpoint; "" when it serves none.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// TokenEndpointHTTPS is its https:// URL; "" when it serves none.
	// LocalCA names the files that make a caller trust it.
	TokenEndpointHTTPS string   `json:"token_endpoint_https,omitempty"`
	LocalCA            *LocalCA `json:"local_ca,omitempty"`
	// AzureIdentity is the agent's Azure managed-identity endpoint; nil
	// when it serves none.
	AzureIdentity *AzureIdentity `json:"azure_identity,omitempty"`
	// Store is the token store's state; nil when the agent does not say.
	Store *StoreHealth `json:"store,omitempty"`
	// Degraded names this user's profiles that cannot serve a token now
	// (the last fetch failed and no valid token is held).
	Degraded []string `json:"degraded,omitempty"`
	// Agent says which agent answers; nil when it does not say.
	Agent *AgentInfo `json:"agent,omitempty"`
	// Doors are the agent's TCP doors (token_endpoint, metrics_listen),
	// one entry per address, and whether each is bound.
	Doors []DoorHealth `json:"doors,omitempty"`
}

// DoorHealth is one address of one of the agent's TCP doors.
type DoorHealth struct {
	Door    string `json:"door"`    // the setting: token_endpoint, metrics_listen
	Address string `json:"address"` // host:port
	// State is "up", or "down" when another process holds the port (the
	// agent retries; Error names the holder where the kernel says).
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// AgentInfo describes the running agent.
type AgentInfo struct {
	Version    string    `json:"version"`
	Config     string    `json:"config,omitempty"` // its configuration file
	StartedAt  time.Time `json:"started_at"`
	ReloadedAt time.Time `json:"reloaded_at,omitzero"`
}

// StoreHealth is the agent's token store. The store is a cache: in every
// state the agent serves tokens from memory.
type StoreHealth struct {
	Path string `json:"path,omitempty"`
	// State is "ok", "memory" (no store configured), "failing" (the last
	// write failed), "stalled" (a write has hung for seconds) or
	// "unavailable" (not open; the agent keeps trying).
	State string `json:"state"`
	// Error is the last failure, when State is not ok.
	Error         string `json:"error,omitempty"`
	Stalls        uint64 `json:"stalls"`
	WriteFailures uint64 `json:"write_failures"`
	PendingWrites int    `json:"pending_writes"`
}

// ProfileStatus is what the agent tells this process's user about one of
// the profiles it may use. It never holds a token.
type ProfileStatus struct {
	Name string `json:"name"`
	// ExpiresAt is when the held token expires; zero when none is held.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// LastRefresh is when the agent last got a token from the IdP.
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	// LastError is the last fetch's failure, "" after a success.
	LastError string `json:"last_error,omitempty"`
	// NextAttempt is when the agent asks the IdP again after a failure.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// UpstreamRequests counts the agent's requests to the IdP.
	UpstreamRequests int `json:"upstream_requests"`
	// Idle: nobody asked for a while, so the agent stopped refreshing.
	Idle bool `json:"idle,omitempty"`
	// Audience and Scopes are what the profile's tokens are for, as a
	// client of the agent's token endpoint must ask for them.
	Audience string   `json:"audience,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	// Origin is where the held token came from: "idp", "store" or
	// "fleet"; ObtainedAt is when it was fetched.
	Origin     string    `json:"origin,omitempty"`
	ObtainedAt time.Time `json:"obtained_at,omitzero"`
	// Fleet is the profile's fleet state ("fleet", "local", "fleet
	// unavailable", "fleet unavailable: reads only", "local: wrong
	// seal_key") when the agent shares tokens
	// with other hosts; MintedBy names the host whose agent fetched the
	// held token.
	Fleet    string `json:"fleet,omitempty"`
	MintedBy string `json:"minted_by,omitempty"`
	// ClockSkewSeconds is how far the IdP's clock seems to lie from the
	// agent's, when that is more than 30 s.
	ClockSkewSeconds float64 `json:"clock_skew_seconds,omitempty"`
	// SinkExpiresAt, for a profile with file sinks, is when the token its
	// files hold expires; SinkStale is set once that has passed (the IdP
	// could not give a new one in time; the files keep the last token).
	SinkExpiresAt time.Time `json:"sink_expires_at,omitzero"`
	SinkStale     bool      `json:"sink_stale,omitempty"`
	// GCPMetadata is the address of the Google metadata server serving
	// this profile (gcp_metadata), for GCE_METADATA_HOST; "" when none.
	GCPMetadata string `json:"gcp_metadata,omitempty"`
	// AssertionExpiresAt, for a profile authenticated by a platform's
	// token (auth = "client_assertion"), is when the token the agent last
	// read from its file expires; zero when none could be read.
	AssertionExpiresAt time.Time `json:"assertion_expires_at,omitzero"`
	// Budgets are the budgets counting the profile's IdP requests.
	Budgets []Budget `json:"budgets,omitempty"`
	// Callers are the callers the agent lately admitted to the profile,
	// newest first, with the allow rule that admitted each; the agent
	// tells them to root and its own user only.
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

// Budget is one budget of IdP token requests in its current calendar
// period (UTC): see docs/budgets.md.
type Budget struct {
	// For is "profile" or "client_id" (then ClientID names it).
	For      string `json:"for"`
	ClientID string `json:"client_id,omitempty"`
	// Limit requests per Period (hour, day, month), ending at PeriodEnd.
	Limit     int64     `json:"limit"`
	Period    string    `json:"period"`
	PeriodEnd time.Time `json:"period_end"`
	// Used so far, and Projected to PeriodEnd at the rate seen so far.
	Used      int64 `json:"used"`
	Projected int64 `json:"projected"`
	// Counted is "fleet", "host" or "host: fleet unavailable".
	Counted string `json:"counted"`
	// Enforced: budget_enforce; Paused: spent, serving the held token.
	Enforced bool `json:"enforced,omitempty"`
	Paused   bool `json:"paused,omitempty"`
}
