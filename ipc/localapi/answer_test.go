package localapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// TestAppendTokenIsJSON: the hand-written token answer is what
// encoding/json writes, byte for byte.
func TestAppendTokenIsJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 8, 45, 1, 123456789, time.UTC)
	for _, tok := range []ipc.TokenResponse{
		{AccessToken: "eyJhbGciOi.eyJzdWIi.sig-_~+/==", TokenType: "Bearer", ExpiresAt: at, ExpiresIn: 3599},
		{AccessToken: "x", TokenType: "Bearer", ExpiresAt: at.Truncate(time.Second), ExpiresIn: 0, Scope: "read write"},
		{AccessToken: "x", TokenType: "DPoP", ExpiresAt: at, ExpiresIn: -5, Scope: "a<b>&\"c\\\u00e9\x01"},
		{AccessToken: "x", TokenType: "Bearer", ExpiresAt: at.In(time.FixedZone("X", 3600)), ExpiresIn: 1},
		{},
	} {
		want, err := json.Marshal(&tok)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendToken(nil, &tok); string(got) != string(want) {
			t.Errorf("appendToken(%+v)\n = %s\nwant %s", tok, got, want)
		}
	}
}

func FuzzAppendToken(f *testing.F) {
	f.Add("tok", "Bearer", "scope", int64(60), int64(1767000000))
	f.Fuzz(func(t *testing.T, access, typ, scope string, in, at int64) {
		tok := ipc.TokenResponse{AccessToken: access, TokenType: typ, Scope: scope, ExpiresIn: in, ExpiresAt: time.Unix(at, at%1e9).UTC()}
		want, err := json.Marshal(&tok)
		if err != nil {
			return // a time json cannot write; appendToken falls back to it
		}
		if got := appendToken(nil, &tok); string(got) != string(want) {
			t.Errorf("appendToken = %s, want %s", got, want)
		}
	})
}
