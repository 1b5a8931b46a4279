package tokenendpoint

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSecretBackoff: free attempts, then a wait that doubles up to its
// cap; a right secret or a long quiet forgets; sources apart.
func TestSecretBackoff(t *testing.T) {
	var b secretBackoff
	now := time.Unix(1_000_000, 0)
	for i := 1; i < freeFailures; i++ {
		if backoff, n := b.failed("a", now); backoff != 0 || n != i {
			t.Fatalf("failure %d: backoff %v (%d), want none", i, backoff, n)
		}
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		if backoff, _ := b.failed("a", now); backoff != want {
			t.Errorf("failure %d: backoff %v, want %v", freeFailures+i, backoff, want)
		}
		if wait := b.wait("a", now); wait != want {
			t.Errorf("wait after failure %d = %v, want %v", freeFailures+i, wait, want)
		}
		if wait := b.wait("b", now); wait != 0 {
			t.Errorf("another source waits %v", wait)
		}
		now = now.Add(want)
	}
	for range 30 {
		b.failed("a", now)
	}
	if backoff, _ := b.failed("a", now); backoff != maxBackoff {
		t.Errorf("after many failures: backoff %v, want %v", backoff, maxBackoff)
	}
	if wait := b.wait("a", now.Add(maxBackoff+forgetAfter+time.Second)); wait != 0 {
		t.Errorf("after a long quiet: wait %v, want 0", wait)
	}
	b.failed("c", now)
	b.succeeded("c")
	if b.sources["c"] != nil {
		t.Error("a right secret did not forget the wrong ones")
	}
	for i := range 2 * maxSources {
		b.failed(strings.Repeat("x", i%50)+string(rune(i)), now)
	}
	if len(b.sources) > maxSources {
		t.Errorf("%d sources remembered, want at most %d", len(b.sources), maxSources)
	}
}

// TestLocalSecretGuessesAreSlowedDown (issue 22, attack 1): guessing a
// profile's local_secret as unidentified callers gets 401s, then 429
// slow_down with Retry-After, the secret unchecked (even the right one)
// while the wait lasts. Before, every guess was checked: a 4-digit secret
// fell in 0.2 s.
func TestLocalSecretGuessesAreSlowedDown(t *testing.T) {
	target := serveUnidentified(t, localSecretConfig(t), Config{UnidentifiedByLocalSecret: true}, errors.New("another network namespace"))
	ask := func(secret string) *http.Response {
		resp, err := http.PostForm(target, url.Values{"grant_type": {"client_credentials"}, "client_id": {"zeebe"}, "client_secret": {secret}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := range freeFailures {
		if resp := ask("guess"); resp.StatusCode != 401 {
			t.Fatalf("guess %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp := ask(localSecret)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("the right secret during the backoff: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestResourceExhaustionIs503 (issue 22, attack 1): a caller the agent
// cannot identify for lack of file descriptors is asked to retry (503
// temporarily_unavailable, Retry-After), never told its credentials are
// wrong (401 invalid_client).
func TestResourceExhaustionIs503(t *testing.T) {
	target := serveUnidentified(t, localSecretConfig(t), Config{}, errNoResources())
	resp, err := http.PostForm(target, url.Values{"grant_type": {"client_credentials"}, "client_id": {"zeebe"}, "client_secret": {localSecret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("identification out of file descriptors: %d, want 503 with Retry-After", resp.StatusCode)
	}
}
