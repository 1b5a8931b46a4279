package schedule

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"
)

var policy = Policy{RefreshAt: 0.75, MinValid: 30 * time.Second, DefaultTTL: 5 * time.Minute, MaxTTL: 24 * time.Hour}

// jwt is an unsigned JWT whose payload is claims: the agent reads exp
// without verifying, so the signature does not matter here.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + ".sig"
}

func TestLifetime(t *testing.T) {
	sent := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	expIn := func(d time.Duration) string { return jwt(fmt.Sprintf(`{"exp":%d}`, sent.Add(d).Unix())) }
	for _, tc := range []struct {
		name      string
		token     string
		expiresIn time.Duration
		want      time.Duration
		wantSkew  time.Duration
	}{
		{"expires_in, opaque", "opaque", time.Hour, time.Hour, 0},
		{"expires_in agrees with exp", expIn(time.Hour), time.Hour, time.Hour, 0},
		{"expires_in capped by an earlier exp (IdP clock behind)", expIn(58 * time.Minute), time.Hour, 58 * time.Minute, -2 * time.Minute},
		{"a later exp does not lengthen expires_in", expIn(2 * time.Hour), time.Hour, time.Hour, time.Hour},
		{"no expires_in: the JWT's exp", expIn(10 * time.Minute), 0, 10 * time.Minute, 0},
		{"negative expires_in: the JWT's exp", expIn(20 * time.Minute), -time.Minute, 20 * time.Minute, 0},
		{"no expires_in, opaque: default_ttl", "opaque", 0, policy.DefaultTTL, 0},
		{"no expires_in, exp already past: default_ttl", expIn(-time.Minute), 0, policy.DefaultTTL, 0},
		{"huge expires_in, opaque: clamped to max_ttl", "opaque", 1e6 * time.Hour, policy.MaxTTL, 0},
		{"exp as a decimal", jwt(fmt.Sprintf(`{"exp":%d.5}`, sent.Add(time.Minute).Unix())), 0, time.Minute, 0},
		{"exp absurdly large: not a JWT expiry", jwt(`{"exp":1e12}`), 0, policy.DefaultTTL, 0},
		{"payload not JSON: opaque", "a.bm90IGpzb24.c", 0, policy.DefaultTTL, 0},
		{"no exp claim: opaque", jwt(`{"sub":"x"}`), time.Hour, time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why, skew := policy.Lifetime(tc.token, tc.expiresIn, sent)
			if got != tc.want || skew != tc.wantSkew {
				t.Errorf("Lifetime(%q, %v) = %v (%s), skew %v; want %v, skew %v", tc.name, tc.expiresIn, got, why, skew, tc.want, tc.wantSkew)
			}
		})
	}
}

func TestRefreshTime(t *testing.T) {
	sent := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		jitter float64
		want   time.Duration // after sent
	}{
		{"three quarters, jitter centred", 40 * time.Minute, 0.5, 30 * time.Minute},
		{"jitter +5 % never passes min_valid before expiry", 2 * time.Minute, 0.99, 90 * time.Second},
		{"min_valid before expiry at the latest", 100 * time.Second, 0.5, 70 * time.Second},
		{"never sooner than MinRefreshInterval", time.Second, 0.5, MinRefreshInterval},
		{"ttl below min_valid: the fraction", 20 * time.Second, 0.5, 15 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := policy.RefreshTime(sent, tc.ttl, tc.jitter).Sub(sent); got != tc.want {
				t.Errorf("RefreshTime(sent, %v, %v) = sent+%v, want sent+%v", tc.ttl, tc.jitter, got, tc.want)
			}
		})
	}
}
