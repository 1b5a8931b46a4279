package door_test

import (
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// TestTokenFingerprint: the remembered fingerprint is always the one of
// the token asked about, for the same string asked again, for another
// string of the same bytes and for many tokens in turn.
func TestTokenFingerprint(t *testing.T) {
	var tokens []string
	for i := range 500 {
		tokens = append(tokens, strings.Repeat(string(rune('a'+i%26)), 1+i%40)+string(rune('A'+i%26)))
	}
	for round := range 3 {
		for _, tok := range tokens {
			if round == 2 {
				tok = strings.Clone(tok)
			}
			if got, want := door.TokenFingerprint(tok), ipc.Fingerprint(tok); got != want {
				t.Fatalf("round %d: TokenFingerprint(%q) = %s, want %s", round, tok, got, want)
			}
		}
	}
}
