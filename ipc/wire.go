// Package ipc is tokenagent's socket protocol: the wire types both sides
// share, where the socket lives, and the server side — a listener that
// sets the socket's mode and group explicitly, never unlinks a live
// socket, reads each connection's peer credentials, and an HTTP/1.1
// handler over the small Backend interface that package agent satisfies.
//
// The protocol is plain HTTP over a Unix socket, so that
//
//	curl --unix-socket /run/tokenagent/agent.sock http://tokenagent/v1/tokens/NAME
//
// works. Package clientlib is the Go client; it imports only this package.
package ipc

import "time"

// Host is the only Host header the server accepts.
const Host = "tokenagent"

// Paths.
const (
	PathTokens   = "/v1/tokens/" // + {profile}, + {profile}/refresh
	PathProfiles = "/v1/profiles"
	PathHealth   = "/v1/health"
	PathMetrics  = "/metrics"
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
}

// ProfilesResponse is the answer to GET /v1/profiles.
type ProfilesResponse struct {
	Profiles []ProfileInfo `json:"profiles"`
}

// HealthResponse is the answer to GET /v1/health.
type HealthResponse struct {
	Status string `json:"status"` // "ok"
}
