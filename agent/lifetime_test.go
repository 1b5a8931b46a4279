package agent_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// TestExpiryCappedByJWTExp: an IdP that counts in whole seconds issues an
// exp up to a second before sent + expires_in, and the API goes by exp:
// the agent never takes a token for living longer than its exp, so no
// caller gets less than min_valid by the token's own account.
func TestExpiryCappedByJWTExp(t *testing.T) {
	h := newHarness(t, `min_valid = "5s"`)
	h.clock.Advance(900 * time.Millisecond) // the IdP truncates this
	tok := h.mustToken(0)
	exp := jwtExp(t, tok.AccessToken)
	if tok.ExpiresAt.After(exp) {
		t.Fatalf("ExpiresAt %v is after the JWT's exp %v", tok.ExpiresAt, exp)
	}
	// 4.5 s before exp by the token's own account: not served for min_valid 5s.
	h.clock.Advance(exp.Add(-4500 * time.Millisecond).Sub(h.clock.Now()))
	if got := h.mustToken(0); got.AccessToken == tok.AccessToken {
		t.Errorf("served the old token with %v left by its exp, min_valid 5s", exp.Sub(h.clock.Now()))
	}
	if st := h.agent.Status()[0]; st.ClockSkew != 0 {
		t.Errorf("ClockSkew = %v for a sub-second truncation, want 0 (not worth a warning)", st.ClockSkew)
	}
}

// TestClockSkewReported: an IdP whose clock is two minutes behind the
// host's issues tokens whose exp is two minutes before the host computes;
// the earlier expiry is used, and the skew logged once and shown.
func TestClockSkewReported(t *testing.T) {
	h := newHarness(t, "")
	h.srv.SetClock(func() time.Time { return h.clock.Now().Add(-2 * time.Minute) })
	tok := h.mustToken(0)
	if exp := jwtExp(t, tok.AccessToken); !tok.ExpiresAt.Equal(exp) {
		t.Errorf("ExpiresAt %v, want the JWT's earlier exp %v", tok.ExpiresAt, exp)
	}
	st := h.agent.Status()[0]
	if st.ClockSkew > -time.Minute {
		t.Errorf("ClockSkew = %v, want about -2m", st.ClockSkew)
	}
	h.agent.ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(tok.AccessToken), 0)
	if n := strings.Count(suiteLog.textFor(t), "disagree"); n != 1 {
		t.Errorf("clock skew logged %d times over two tokens, want once", n)
	}
}

// jwtExp reads a JWT's exp claim.
func jwtExp(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return time.Unix(claims.Exp, 0)
}
