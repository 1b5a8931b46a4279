package agent

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idp"
)

// minRefreshInterval keeps an IdP that issues absurdly short tokens from
// being asked more than once a second.
const minRefreshInterval = time.Second

// clockSkewWarn is how far a JWT's exp may lie from sent + expires_in
// before the host's and the IdP's clocks count as disagreeing (logged once
// per profile, shown in status). Network latency and an IdP that counts in
// whole seconds account for a second or two.
const clockSkewWarn = 30 * time.Second

// lifetime decides how long a fresh token lives, measured from when its
// request was sent: the IdP's expires_in, capped by the JWT's exp when the
// token is a JWT (an IdP that truncates its clock to seconds issues an exp
// up to a second before sent + expires_in, and the API goes by exp); with
// no expires_in, the JWT's exp; else default_ttl. The result is capped at
// max_ttl. The second result says which rule applied, for the log; skew is
// exp − (sent + expires_in), when both are known.
func lifetime(resp *idp.Response, sent time.Time, t config.Timing) (ttl time.Duration, why string, skew time.Duration) {
	exp, isJWT := jwtExpiry(resp.AccessToken)
	ttl, why = resp.ExpiresIn, "expires_in"
	switch {
	case ttl > 0 && isJWT:
		skew = exp.Sub(sent.Add(ttl))
		if d := exp.Sub(sent); d > 0 && d < ttl {
			ttl, why = d, "expires_in capped by the jwt exp"
		}
	case ttl <= 0:
		ttl, why = t.DefaultTTL.Duration, "default_ttl"
		if isJWT {
			if d := exp.Sub(sent); d > 0 {
				ttl, why = d, "jwt exp"
			} else {
				why = "default_ttl (the JWT's exp is already past: check the host clock)"
			}
		}
	}
	if ttl > t.MaxTTL.Duration {
		ttl, why = t.MaxTTL.Duration, why+" clamped to max_ttl"
	}
	return ttl, why, skew
}

// refreshTime is when a token obtained at sent with lifetime ttl should be
// refreshed: refresh_at of the lifetime, jittered ±5 % so that profiles
// and hosts do not refresh in lockstep, never later than min_valid before
// expiry and never sooner than minRefreshInterval. jitter is in [0, 1).
func refreshTime(sent time.Time, ttl time.Duration, t config.Timing, jitter float64) time.Time {
	frac := t.RefreshAt * (0.95 + 0.1*jitter)
	after := time.Duration(float64(ttl) * frac)
	if latest := ttl - t.MinValid.Duration; latest > 0 && after > latest {
		after = latest
	}
	return sent.Add(max(after, minRefreshInterval))
}

// jwtExpiry reads the exp claim of a JWT without verifying it: the agent
// only needs to know when the token stops working, and the API that
// receives it does the verifying.
func jwtExpiry(token string) (time.Time, bool) {
	first := strings.IndexByte(token, '.')
	if first < 0 {
		return time.Time{}, false
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(rest[:second], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	secs, err := claims.Exp.Float64()
	if err != nil || secs <= 0 || secs > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(secs), 0), true
}
