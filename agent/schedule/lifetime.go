package schedule

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// MinRefreshInterval keeps an IdP that issues absurdly short tokens from
// being asked more than once a second.
const MinRefreshInterval = time.Second

// ClockSkewWarn is how far a JWT's exp may lie from sent + expires_in
// before the host's and the IdP's clocks count as disagreeing (logged once
// per profile, shown in status). Network latency and an IdP that counts in
// whole seconds account for a second or two.
const ClockSkewWarn = 30 * time.Second

// Policy is a profile's timing settings (config.Timing) as the arithmetic
// needs them: plain durations, so that this package depends on nothing.
type Policy struct {
	RefreshAt        float64       // fraction of the lifetime after which a token is refreshed
	MinValid         time.Duration // a refresh starts at least this long before expiry
	DefaultTTL       time.Duration // the lifetime when neither expires_in nor a JWT exp says
	MaxTTL           time.Duration // caps any stated lifetime
	MaxBackoff       time.Duration // caps the transient backoff and the honoured Retry-After
	PermanentBackoff time.Duration // how long a permanent refusal is held
}

// Lifetime decides how long a fresh token lives, measured from when its
// request was sent: the IdP's expires_in, capped by the JWT's exp when the
// token is a JWT (an IdP that truncates its clock to seconds issues an exp
// up to a second before sent + expires_in, and the API goes by exp); with
// no expires_in (0 or less), the JWT's exp; else default_ttl. The result
// is capped at max_ttl. The second result says which rule applied, for the
// log; skew is exp − (sent + expires_in), when both are known.
func (p Policy) Lifetime(accessToken string, expiresIn time.Duration, sent time.Time) (ttl time.Duration, why string, skew time.Duration) {
	exp, isJWT := jwtExpiry(accessToken)
	ttl, why = expiresIn, "expires_in"
	switch {
	case ttl > 0 && isJWT:
		skew = exp.Sub(sent.Add(ttl))
		if d := exp.Sub(sent); d > 0 && d < ttl {
			ttl, why = d, "expires_in capped by the jwt exp"
		}
	case ttl <= 0:
		ttl, why = p.DefaultTTL, "default_ttl"
		if isJWT {
			if d := exp.Sub(sent); d > 0 {
				ttl, why = d, "jwt exp"
			} else {
				why = "default_ttl (the JWT's exp is already past: check the host clock)"
			}
		}
	}
	if ttl > p.MaxTTL {
		ttl, why = p.MaxTTL, why+" clamped to max_ttl"
	}
	return ttl, why, skew
}

// RefreshTime is when a token obtained at sent with lifetime ttl should be
// refreshed: refresh_at of the lifetime, jittered ±5 % so that profiles
// and hosts do not refresh in lockstep, never later than min_valid before
// expiry and never sooner than MinRefreshInterval. jitter is in [0, 1).
func (p Policy) RefreshTime(sent time.Time, ttl time.Duration, jitter float64) time.Time {
	frac := p.RefreshAt * (0.95 + 0.1*jitter)
	after := time.Duration(float64(ttl) * frac)
	if latest := ttl - p.MinValid; latest > 0 && after > latest {
		after = latest
	}
	return sent.Add(max(after, MinRefreshInterval))
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
