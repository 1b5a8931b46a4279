package clientlib

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

func TestDecodeToken(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, body := range []string{
		`{"access_token":"eyJ.a.b","token_type":"Bearer","expires_at":"2026-11-25T10:00:00Z","expires_in":3599,"scope":"read write"}`,
		" {\n \"access_token\" : \"eyJ.a.b\" ,\"token_type\":\"Bearer\", \"expires_at\":\"2026-11-25T10:00:00Z\",\"expires_in\": 3599,\"scope\":\"read write\"}\n",
		`{"access_token":"eyJ.a.b","token_type":"Bearer","expires_at":"2026-11-25T10:00:00Z","expires_in":3599,"scope":"read\u0020write"}`, // escape: encoding/json
		`{"access_token":"eyJ.a.b","token_type":"Bearer","expires_at":"2026-11-25T10:00:00Z","extra":{"n":[1]},"scope":"read write"}`,      // nesting: encoding/json
	} {
		tr, err := decodeToken([]byte(body))
		if err != nil || tr.AccessToken != "eyJ.a.b" || tr.TokenType != "Bearer" || tr.Scope != "read write" || !tr.ExpiresAt.Equal(at) {
			t.Errorf("decodeToken(%q) = %+v, %v", body, tr, err)
		}
	}
	for _, bad := range []string{``, `{`, `[]`, `{"access_token":"x",}`, `{"expires_at":"tomorrow"}`} {
		if _, err := decodeToken([]byte(bad)); err == nil {
			t.Errorf("decodeToken(%q) succeeded", bad)
		}
	}
}

// FuzzDecodeToken: whatever the fast path accepts, encoding/json reads
// the same way.
func FuzzDecodeToken(f *testing.F) {
	f.Add(`{"access_token":"eyJ.a.b","token_type":"Bearer","expires_at":"2026-11-25T10:00:00Z","expires_in":3599}`)
	f.Add(`{"a":1,"b":"x"}`)
	f.Add(`{}`)
	f.Add("{\"\xe3\":0}")                                 // invalid UTF-8: encoding/json substitutes U+FFFD
	f.Add("{}\f")                                         // \f is not JSON white space
	f.Add(`{"eXpires_At":"2026-11-25T10:00:00Z","a":01}`) // keys match without case; 01 is no number
	f.Add(`{"":"x","n":3e999}`)                           // a JSON number beyond float64
	f.Fuzz(func(t *testing.T, body string) {
		fields, ok := flatObject([]byte(body))
		if !ok {
			return
		}
		if !json.Valid([]byte(body)) {
			t.Fatalf("flatObject accepted %q, which is not JSON", body)
		}
		var generic map[string]any
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber() // 3e999 is JSON, but no float64
		if err := dec.Decode(&generic); err != nil {
			t.Fatalf("flatObject accepted %q, which encoding/json cannot read: %v", body, err)
		}
		for k, v := range fields {
			g, present := generic[k]
			if !present {
				t.Fatalf("flatObject(%q) has key %q that encoding/json does not", body, k)
			}
			if s, isString := g.(string); isString && s != v {
				t.Fatalf("flatObject(%q)[%q] = %q, encoding/json says %q", body, k, v, s)
			}
		}
		if len(fields) != len(generic) {
			t.Fatalf("flatObject(%q) has %d keys, encoding/json %d", body, len(fields), len(generic))
		}
		var want ipc.TokenResponse
		if json.Unmarshal([]byte(body), &want) == nil {
			got, err := decodeToken([]byte(body))
			if err == nil && (got.AccessToken != want.AccessToken || got.TokenType != want.TokenType || got.Scope != want.Scope || !got.ExpiresAt.Equal(want.ExpiresAt)) {
				t.Fatalf("decodeToken(%q) = %+v, encoding/json %+v", body, got, want)
			}
		}
	})
}
