package idp

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tokenagent/tokenagent/ipc"
)

// FuzzParseTokenResponse feeds arbitrary bodies, statuses and Retry-After
// values to the response parser: it must return exactly one of a token or
// an *Error, and never panic.
func FuzzParseTokenResponse(f *testing.F) {
	f.Add(200, `{"access_token":"a","token_type":"Bearer","expires_in":3600}`, "")
	f.Add(200, `{"access_token":"a","expires_in":"3599","scope":["a","b"]}`, "")
	f.Add(400, `{"error":"invalid_client","error_description":"nope"}`, "")
	f.Add(429, ``, "30")
	f.Add(503, `<html>`, "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(200, `{"access_token":"a","expires_in":1e400}`, "")
	f.Add(200, `{"error":"x\u0000y"}`, "-1")
	f.Add(200, `{"access_token":"a\"b\ncurl-injected","token_type":"Bearer\r\nX-Injected: 1"}`, "")
	f.Add(400, `{"error":"invalid_client","error_description":"\u009b31mred\u202eevil"}`, "")
	f.Fuzz(func(t *testing.T, status int, body, retryAfter string) {
		hdr := http.Header{"Retry-After": {retryAfter}}
		resp, err := parseTokenResponse("https://idp.example/token", status, hdr, []byte(body), time.Unix(1e9, 0))
		if (resp == nil) == (err == nil) {
			t.Fatalf("parseTokenResponse = %v, %v; want exactly one", resp, err)
		}
		if err != nil {
			var ie *Error
			if !errors.As(err, &ie) {
				t.Fatalf("error %T is not *Error", err)
			}
			if ie.RetryAfter < 0 {
				t.Fatalf("RetryAfter = %v < 0", ie.RetryAfter)
			}
			if hasControl(err.Error()) || hasControl(ie.Code) || hasControl(ie.Description) {
				t.Fatalf("error text carries a control or format character: %q", err.Error())
			}
			return
		}
		if !ipc.ValidToken(resp.AccessToken) || resp.ExpiresIn < 0 {
			t.Fatalf("bad response %+v", resp)
		}
		if _, ok := normalTokenType(resp.TokenType); !ok || resp.TokenType == "" || hasControl(resp.Scope) {
			t.Fatalf("token_type %q or scope %q would reach a header or terminal as it is", resp.TokenType, resp.Scope)
		}
	})
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return true
		}
	}
	return false
}

// TestRedactBeforeTruncating: an echo of the secret is taken out before
// the description is cut to length, so no prefix of it survives the cut.
func TestRedactBeforeTruncating(t *testing.T) {
	secret := "verysecretvalue-0123456789"
	body := fmt.Sprintf(`{"error":"invalid_client","error_description":"%s%s"}`, strings.Repeat("x", 500), secret)
	_, err := parseTokenResponse("https://idp.example/token", 401, http.Header{}, []byte(body), time.Unix(1e9, 0), secret)
	if strings.Contains(err.Error(), secret[:8]) {
		t.Errorf("a prefix of the secret survived: %v", err)
	}
	for _, echo := range []string{secret, url.QueryEscape("a+b/" + secret), "Basic " + base64.StdEncoding.EncodeToString([]byte("c:"+secret))} {
		if got := redact("said: "+echo, []string{secret, "a+b/" + secret, "Basic " + base64.StdEncoding.EncodeToString([]byte("c:"+secret))}); strings.Contains(got, "verysecret") || strings.Contains(got, base64.StdEncoding.EncodeToString([]byte("c:" + secret))[:12]) {
			t.Errorf("redact(%q) = %q", echo, got)
		}
	}
}

// FuzzJWTExpiry feeds arbitrary file contents to the reader of a
// platform's token: an exp or an error, never a panic, and an error
// never quotes the text.
func FuzzJWTExpiry(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjE3OTk5OTk5OTl9.c2ln")
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJleHAiOiIxNzk5In0.c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJ9.eyJleHAiOjFlMzAwfQ.x")
	f.Fuzz(func(t *testing.T, text string) {
		exp, err := jwtExpiry(text)
		if err != nil {
			if len(text) >= 8 && strings.Contains(err.Error(), text) {
				t.Fatalf("jwtExpiry error %q quotes the text", err)
			}
			return
		}
		if exp.Unix() <= 0 {
			t.Fatalf("jwtExpiry(%q) = %v, want a positive time", text, exp)
		}
	})
}
