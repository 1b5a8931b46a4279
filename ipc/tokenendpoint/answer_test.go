package tokenendpoint

import (
	"encoding/json"
	"testing"
)

// TestTokenAnswerIsJSON: the hand-written answer is what encoding/json
// writes, byte for byte.
func TestTokenAnswerIsJSON(t *testing.T) {
	for _, a := range []tokenAnswer{
		{AccessToken: "eyJhbGciOi.eyJzdWIi.sig-_~+/==", TokenType: "Bearer", ExpiresIn: 3599},
		{AccessToken: "x", TokenType: "Bearer", Scope: "read write"},
		{AccessToken: "x<&>", TokenType: "Bearer", ExpiresIn: 1, Scope: "\"é\x01\\"},
	} {
		want, _ := json.Marshal(&a)
		if got := a.append(nil); string(got) != string(want) {
			t.Errorf("append = %s, want %s", got, want)
		}
	}
}
