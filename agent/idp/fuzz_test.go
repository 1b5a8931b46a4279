package idp

import (
	"errors"
	"net/http"
	"testing"
	"time"
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
			return
		}
		if resp.AccessToken == "" || resp.ExpiresIn < 0 {
			t.Fatalf("bad response %+v", resp)
		}
	})
}
