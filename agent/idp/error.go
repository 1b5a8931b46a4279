package idp

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrResponseTooLarge is returned when a token endpoint's body exceeds [MaxResponseBytes].
var ErrResponseTooLarge = errors.New("idp: response body exceeds 1 MiB")

// Error is a failed token request. It carries the RFC 6749 §5.2 fields when
// the identity provider sent them, and says whether retrying can help.
//
// Error never holds a secret, an assertion or a token: only what the IdP
// said about the request and the endpoint it was sent to.
type Error struct {
	// Endpoint is the token endpoint (or discovery document) that was asked.
	Endpoint string
	// StatusCode is the HTTP status; 0 when no response arrived.
	StatusCode int
	// Code is the RFC 6749 error code ("invalid_client", …), if any.
	Code string
	// Description is the IdP's error_description, if any.
	Description string
	// RetryAfter is the IdP's Retry-After, if it sent one.
	RetryAfter time.Duration
	// Transient reports whether the same request may succeed later
	// (network failure, timeout, 5xx, 429, unreadable body). A permanent
	// error (invalid_client, invalid_scope, …) needs a configuration change.
	Transient bool
	// Err is the underlying cause, if any (network error, parse error).
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("idp: ")
	b.WriteString(e.Endpoint)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
	}
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// permanentCodes are the RFC 6749 §5.2 and RFC 8707 error codes that no
// amount of retrying fixes.
var permanentCodes = map[string]bool{
	"invalid_request":        true,
	"invalid_client":         true,
	"invalid_grant":          true,
	"unauthorized_client":    true,
	"unsupported_grant_type": true,
	"invalid_scope":          true,
	"invalid_target":         true,
	"access_denied":          true,
}

// transientCodes are error codes that mean "later", whatever the status.
var transientCodes = map[string]bool{
	"temporarily_unavailable": true,
	"server_error":            true,
	"slow_down":               true,
}

// classify decides whether an error answer is worth retrying.
func classify(status int, code string) (transient bool) {
	switch {
	case transientCodes[code]:
		return true
	case permanentCodes[code]:
		return false
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return true
	case status >= 400:
		// 401/403/404 and other 4xx without a code we know: the request itself
		// is wrong (bad URL, bad credentials); retrying burns quota.
		return false
	default:
		// A 200 that is not a token, or an unknown code on a 2xx/3xx: the IdP
		// misbehaved; try again later rather than give up for good.
		return true
	}
}

// ParseRetryAfter reads a Retry-After header value: delay-seconds or an
// HTTP date (RFC 9110 §10.2.3), relative to now. It returns 0 for an empty,
// unparseable or past value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		const maxSecs = int64(365 * 24 * 3600) // beyond this it is nonsense; callers clamp further
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
