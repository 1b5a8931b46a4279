package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

func TestColdBurstIsOneFetch(t *testing.T) {
	h := newHarness(t, "")
	const callers = 1000
	tokens := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			tok, err := h.token(0)
			errs[i] = err
			if tok != nil {
				tokens[i] = tok.AccessToken
			}
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("caller %d got a different token from caller 0", i)
		}
	}
	if got := h.requests(); got != 1 {
		t.Errorf("IdP requests for %d concurrent cold callers = %d, want 1", callers, got)
	}
}

func TestSteadyDemandRefreshesAtThreeQuarters(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "min_valid = \"10s\"\n")
	h.srv.SetTTL(60 * time.Second)
	const minValid = 10 * time.Second
	for elapsed := time.Duration(0); elapsed < time.Hour; elapsed += time.Second {
		tok := h.mustToken(0)
		if left := tok.ExpiresAt.Sub(h.clock.Now()); left < minValid {
			t.Fatalf("at %v a caller got a token with %v left, want >= %v", elapsed, left, minValid)
		}
		h.clock.Advance(time.Second)
	}
	// 3600 s / (60 s × 0.75) = 80.
	t.Logf("IdP requests in one simulated hour: %d", h.requests())
	if got := h.requests(); got < 77 || got > 83 {
		t.Errorf("IdP requests in one simulated hour = %d, want 80 ± 3", got)
	}
}

// refreshDue advances the clock to just past the profile's refresh time.
func (h *harness) refreshDue() {
	h.t.Helper()
	st := h.agent.Status()[0]
	h.clock.Advance(st.RefreshAt.Sub(h.clock.Now()) + time.Millisecond)
}

func TestServesValidTokenWhileIdPFails(t *testing.T) {
	h := newHarness(t, "")
	first := h.mustToken(0)
	h.srv.SetFault(idptest.Fault{Status: http.StatusInternalServerError})
	h.refreshDue() // first failed refresh attempt happens here
	outageStart := h.clock.Now()
	before := h.requests()
	for h.clock.Now().Sub(outageStart) < 5*time.Minute {
		if tok := h.mustToken(0); tok.AccessToken != first.AccessToken {
			t.Fatal("token changed while the IdP was failing")
		}
		h.clock.Advance(time.Second)
	}
	attempts := h.requests() - before + 1 // +1: the attempt at outageStart
	t.Logf("IdP attempts during the 5-minute outage: %d", attempts)
	if attempts > 15 || attempts < 4 {
		t.Errorf("IdP attempts during a 5-minute outage = %d, want backoff (4..15)", attempts)
	}
	st := h.agent.Status()[0]
	if st.LastError == "" || st.NextAttempt.IsZero() {
		t.Fatalf("Status during outage = %+v, want LastError and NextAttempt", st)
	}
	// Recovery: the next scheduled attempt (one backoff step) gets a token.
	h.srv.ClearFault()
	h.clock.Advance(st.NextAttempt.Sub(h.clock.Now()))
	if tok := h.mustToken(0); tok.AccessToken == first.AccessToken {
		t.Errorf("no fresh token at the first attempt after recovery (%v)", st.NextAttempt.Sub(outageStart))
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	for _, form := range []string{"seconds", "http-date"} {
		t.Run(form, func(t *testing.T) {
			h := newHarness(t, "")
			retryAfter := "30"
			if form == "http-date" {
				retryAfter = h.clock.Now().Add(30 * time.Second).Format(http.TimeFormat)
			}
			h.srv.SetFault(idptest.Fault{Status: http.StatusTooManyRequests, RetryAfter: retryAfter})
			_, err := h.token(0)
			var ie *idp.Error
			if !errors.As(err, &ie) || ie.StatusCode != 429 {
				t.Fatalf("Token() during 429 = %v, want the IdP's 429", err)
			}
			for range 29 {
				h.clock.Advance(time.Second)
				if _, err := h.token(0); err == nil {
					t.Fatal("Token() succeeded while the IdP said to wait")
				}
			}
			if got := h.requests(); got != 1 {
				t.Fatalf("IdP requests within Retry-After = %d, want 1", got)
			}
			h.srv.ClearFault()
			h.clock.Advance(1500 * time.Millisecond)
			if _, err := h.token(0); err != nil {
				t.Errorf("Token() after Retry-After passed: %v", err)
			}
			if got := h.requests(); got != 2 {
				t.Errorf("IdP requests after Retry-After = %d, want 2", got)
			}
		})
	}
}

func TestPermanentErrorHeld(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	h.srv.SetFault(idptest.Fault{Status: http.StatusUnauthorized, Error: "invalid_client", Description: "bad credentials"})
	const callers = 1000
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { _, errs[i] = h.token(0) })
	}
	wg.Wait()
	for i, err := range errs {
		var ie *idp.Error
		if !errors.As(err, &ie) || ie.Code != "invalid_client" || ie.Transient {
			t.Fatalf("caller %d: Token() = %v, want permanent invalid_client", i, err)
		}
	}
	if got := h.requests(); got != 1 {
		t.Fatalf("IdP requests for %d callers on invalid_client = %d, want 1", callers, got)
	}
	// Callers keep asking every 10 s for 30 minutes: one request per
	// permanent_backoff (5m), at 0, 5, 10, … 30 minutes.
	for range 180 {
		h.clock.Advance(10 * time.Second)
		h.token(0)
	}
	if got := h.requests(); got != 7 {
		t.Errorf("IdP requests over 30 min with permanent_backoff 5m = %d, want 7", got)
	}
}

func TestCallerCancelDoesNotCancelFetch(t *testing.T) {
	h := newHarness(t, "")
	hold := make(chan struct{})
	h.srv.SetFault(idptest.Fault{Hold: hold})

	ctx, cancel := context.WithCancel(context.Background())
	quitter := make(chan error, 1)
	go func() {
		_, err := h.agent.Token(ctx, self, "p", 0)
		quitter <- err
	}()
	h.srv.WaitRequests(1) // the fetch is at the IdP
	waiter := make(chan *agent.Token, 1)
	go func() { waiter <- h.mustToken(0) }()
	cancel()
	if err := <-quitter; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller got %v, want context.Canceled", err)
	}
	close(hold)
	if tok := <-waiter; tok == nil || tok.AccessToken == "" {
		t.Error("the remaining caller got no token")
	}
	if got := h.requests(); got != 1 {
		t.Errorf("IdP requests = %d, want 1 (the fetch was not cancelled and restarted)", got)
	}
}

func TestRejectedTokenReports(t *testing.T) {
	h := newHarness(t, "")
	old := h.mustToken(0)
	oldSum := ipc.TokenSHA256(old.AccessToken)
	var wg sync.WaitGroup
	got := make([]*agent.Token, 100)
	for i := range got {
		wg.Go(func() {
			tok, err := h.agent.ReportRejected(context.Background(), self, "p", oldSum, 0)
			suiteLog.err(t, err)
			got[i] = tok
		})
	}
	wg.Wait()
	if n := h.requests(); n != 2 {
		t.Fatalf("IdP requests after 100 reports of the current token = %d, want 2 (1 + 1 refresh)", n)
	}
	for i, tok := range got {
		if tok == nil || tok.AccessToken == old.AccessToken {
			t.Fatalf("report %d returned the rejected token or none", i)
		}
	}
	// A late report of the old token costs nothing.
	if _, err := h.agent.ReportRejected(context.Background(), self, "p", oldSum, 0); err != nil {
		t.Fatal(err)
	}
	if n := h.requests(); n != 2 {
		t.Errorf("IdP requests after a report of an old token = %d, want 2", n)
	}
	if _, err := h.agent.ReportRejected(context.Background(), self, "p", "not-hex", 0); !errors.Is(err, ipc.ErrBadRequest) {
		t.Errorf("ReportRejected(not-hex) = %v, want ErrBadReport", err)
	}
}

func TestLifetimeRules(t *testing.T) {
	t.Parallel()
	huge := bytes.Repeat([]byte("a"), 10<<20)
	tests := []struct {
		name    string
		fault   idptest.Fault
		ttl     time.Duration // IdP TTL (JWT exp)
		want    time.Duration // resulting lifetime
		wantErr bool
	}{
		{name: "expires_in", ttl: time.Hour, want: time.Hour},
		{name: "expires_in as string", fault: idptest.Fault{ExpiresIn: `"120"`}, ttl: time.Hour, want: 120 * time.Second},
		{name: "missing, JWT exp used", fault: idptest.Fault{OmitExpiresIn: true}, ttl: 10 * time.Minute, want: 10 * time.Minute},
		{name: "missing, opaque: default_ttl", fault: idptest.Fault{OmitExpiresIn: true, Opaque: true}, ttl: time.Hour, want: 5 * time.Minute},
		{name: "zero, JWT exp used", fault: idptest.Fault{ExpiresIn: "0"}, ttl: 20 * time.Minute, want: 20 * time.Minute},
		{name: "negative, opaque: default_ttl", fault: idptest.Fault{ExpiresIn: "-60", Opaque: true}, ttl: time.Hour, want: 5 * time.Minute},
		{name: "huge, capped by the JWT's exp", fault: idptest.Fault{ExpiresIn: "1e12"}, ttl: time.Hour, want: time.Hour},
		{name: "huge, opaque: clamped to max_ttl", fault: idptest.Fault{ExpiresIn: "1e12", Opaque: true}, ttl: time.Hour, want: 24 * time.Hour},
		{name: "200 with error", fault: idptest.Fault{Status: 200, Error: "server_error"}, wantErr: true},
		{name: "HTML body", fault: idptest.Fault{Status: 200, Body: []byte("<html><body>Sign in</body></html>")}, wantErr: true},
		{name: "10 MiB body", fault: idptest.Fault{Status: 200, Body: huge}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, "")
			h.srv.SetTTL(tt.ttl)
			h.srv.SetFault(tt.fault)
			tok, err := h.token(0)
			if tt.wantErr {
				var ie *idp.Error
				if !errors.As(err, &ie) || !ie.Transient {
					t.Errorf("Token() = %v, want a transient *idp.Error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Token(): %v", err)
			}
			if got := tok.ExpiresAt.Sub(h.clock.Now()); got != tt.want {
				t.Errorf("lifetime = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMinValidLongerThanTTLIsAnErrorNotALoop(t *testing.T) {
	h := newHarness(t, "")
	h.srv.SetTTL(60 * time.Second)
	for range 50 {
		_, err := h.token(2 * time.Minute)
		if !errors.Is(err, ipc.ErrMinValid) {
			t.Fatalf("Token(min_valid 2m) with 60 s tokens = %v, want ErrMinValid", err)
		}
	}
	if got := h.requests(); got != 1 {
		t.Errorf("IdP requests for 50 unsatisfiable asks = %d, want 1", got)
	}
}

func TestIdleProfileStopsRefreshing(t *testing.T) {
	h := newHarness(t, "idle_after = \"10m\"\nmin_valid = \"10s\"\n")
	h.srv.SetTTL(60 * time.Second)
	h.mustToken(0)
	h.clock.Advance(time.Hour)
	// 10 minutes of background refresh, then nothing: 1 + 10m/45s ≈ 14.
	if got := h.requests(); got > 16 {
		t.Errorf("IdP requests over an hour with nobody asking = %d, want refresh to stop after idle_after", got)
	}
	idleCount := h.requests()
	if !h.agent.Status()[0].Idle {
		t.Error("Status().Idle = false after idle_after without requests")
	}
	h.mustToken(0)
	h.clock.Advance(2 * time.Minute)
	if got := h.requests(); got <= idleCount+1 {
		t.Errorf("IdP requests after use resumed = %d, want background refresh again (> %d)", got, idleCount+1)
	}
}

func TestWallClockJumpNeverServesExpired(t *testing.T) {
	h := newHarness(t, "")
	first := h.mustToken(0)
	// Suspend for two hours: timers did not run, the wall clock moved.
	h.clock.Jump(2 * time.Hour)
	tok := h.mustToken(0)
	if tok.AccessToken == first.AccessToken {
		t.Fatal("served the token that expired during the jump")
	}
	if left := tok.ExpiresAt.Sub(h.clock.Now()); left < 30*time.Second {
		t.Errorf("token after jump has %v left", left)
	}
	// The late timer was re-armed: background refresh continues.
	before := h.requests()
	h.clock.Advance(time.Hour)
	if h.requests() == before {
		t.Error("no background refresh after the jump")
	}
}

// TestLogsCarryFingerprints is the positive control for the per-test
// leak check (harness_test.go): fetches and failures are logged, with the
// token's fingerprint, into the log the check greps.
func TestLogsCarryFingerprints(t *testing.T) {
	h := newHarness(t, "")
	tok := h.mustToken(0)
	h.srv.SetFault(idptest.Fault{Status: http.StatusUnauthorized, Error: "invalid_client"})
	h.refreshDue()
	logs := suiteLog.textFor(t)
	for _, want := range []string{`"token_sha256":"` + ipc.Fingerprint(tok.AccessToken) + `"`, `"message":"token fetch failed"`, `"idp_error":"invalid_client"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("suite log lacks %s", want)
		}
	}
	if strings.Contains(logs, tok.AccessToken) {
		t.Error("suite log contains the access token")
	}
}

func TestUnknownProfile(t *testing.T) {
	h := newHarness(t, "")
	_, err := h.agent.Token(context.Background(), self, "nope", 0)
	if !errors.Is(err, ipc.ErrUnknownProfile) {
		t.Errorf("Token(nope) = %v, want ErrUnknownProfile", err)
	}
}

func BenchmarkTokenCached(b *testing.B) {
	srv := idptest.New()
	defer srv.Close()
	srv.AddClient(idptest.Client{ID: "c", Secret: "s", Method: "client_secret_basic"})
	cfg, err := config.ParseConfig([]byte("[profiles.p]\ntoken_url = \""+srv.TokenURL+"\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"), "bench.toml")
	if err != nil {
		b.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	if _, err := a.Token(ctx, self, "p", 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Token(ctx, self, "p", 0); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLeakCheckCatchesAPlantedLeak: the leak check finds a secret, or 20
// characters of a token, in a log, and not a fingerprint.
func TestLeakCheckCatchesAPlantedLeak(t *testing.T) {
	check := &leakCheck{logs: map[string]*testLog{}}
	const planted = "planted-secret-value"
	token := strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 5)
	check.secret(planted, token)
	for _, tc := range []struct {
		log  string
		leak bool
	}{
		{`{"message":"fetch","token_sha256":"` + ipc.Fingerprint(token) + `"}`, false},
		{`error: idp said planted-secret-value was wrong`, true},
		{`{"body":"...` + token[33:60] + `..."}`, true},
	} {
		if got := check.leaksIn(tc.log) != ""; got != tc.leak {
			t.Errorf("leaksIn(%q) found a leak: %v, want %v", tc.log, got, tc.leak)
		}
	}
}

// TestWallClockStepBack: after an NTP step back of the wall clock, the
// refresh timer (monotonic) fires when the token is due by the time that
// really passed, and a token is never served past its real lifetime,
// although the wall clock says it has hours left. (The wall clock alone
// kept serving it for two hours after it expired.)
func TestWallClockStepBack(t *testing.T) {
	h := newHarness(t, "")
	first := h.mustToken(0)
	due := h.agent.Status()[0].RefreshAt.Sub(h.clock.Now())
	h.clock.Jump(-2 * time.Hour) // an NTP step back
	h.clock.Advance(due + time.Millisecond)
	if n := h.requests(); n != 2 {
		t.Fatalf("IdP requests = %d when the token was due by the time that passed, want 2 (refreshed)", n)
	}
	if tok := h.mustToken(0); tok.AccessToken == first.AccessToken {
		t.Error("the old token is still served after its refresh")
	}

	// With the IdP down, a token whose real hour is over is not served,
	// whatever the wall clock says.
	h2 := newHarness(t, "")
	old := h2.mustToken(0)
	h2.srv.SetFault(idptest.Fault{Status: http.StatusServiceUnavailable})
	h2.clock.Jump(-2 * time.Hour)
	h2.clock.Advance(61 * time.Minute)
	if tok, err := h2.token(0); err == nil && tok.AccessToken == old.AccessToken {
		t.Errorf("served a token an hour old (lifetime 1h) because the wall clock was stepped back: expires in %v by it", tok.ExpiresAt.Sub(h2.clock.Now()))
	}
	// Before its real expiry, the answer says how long it really has.
	h3 := newHarness(t, "")
	h3.mustToken(0)
	h3.srv.SetFault(idptest.Fault{Status: http.StatusServiceUnavailable})
	h3.clock.Jump(-2 * time.Hour)
	h3.clock.Advance(50 * time.Minute)
	if tok := h3.mustToken(0); tok.ExpiresAt.Sub(h3.clock.Now()) > 11*time.Minute {
		t.Errorf("a token with 10 minutes of real life left is handed out as expiring in %v", tok.ExpiresAt.Sub(h3.clock.Now()))
	}
}

// TestTimerAfterClockJumpForward: a wall-clock step forward past
// refresh_at (but not past expiry) makes the next request re-arm the late
// timer, and the refresh happens at once rather than at the old due time.
func TestTimerAfterClockJumpForward(t *testing.T) {
	h := newHarness(t, "")
	first := h.mustToken(0)
	st := h.agent.Status()[0]
	h.clock.Jump(st.RefreshAt.Sub(h.clock.Now()) + time.Minute) // past refresh_at, a quarter-hour before expiry
	if tok := h.mustToken(0); tok.AccessToken != first.AccessToken {
		t.Fatal("a still-valid token was not served after the jump")
	}
	h.clock.Advance(time.Millisecond) // the re-armed timer is due now
	if n := h.requests(); n != 2 {
		t.Errorf("IdP requests = %d after a jump past refresh_at, want 2 (refreshed at once)", n)
	}
}

// TestSlowIdPIsNotTheCallersTimeout: an IdP slower than fetch_timeout is
// ErrIdPUnavailable (503 on the socket), while a caller whose own deadline
// passes first gets ErrTimeout (504).
func TestSlowIdPIsNotTheCallersTimeout(t *testing.T) {
	h := newHarness(t, `fetch_timeout = "100ms"`)
	h.srv.SetFault(idptest.Fault{Delay: 5 * time.Second})
	_, err := h.token(0) // 10 s deadline: the fetch times out first
	if !errors.Is(err, ipc.ErrIdPUnavailable) || errors.Is(err, ipc.ErrTimeout) {
		t.Errorf("Token with the IdP slower than fetch_timeout = %v, want ErrIdPUnavailable", err)
	}
	// That caller and those answered at once while the agent holds off
	// are told when to come back (503 with Retry-After over HTTP).
	_, held := h.token(0)
	for name, err := range map[string]error{"the caller whose fetch timed out": err, "a caller while holding off": held} {
		var e *ipc.Error
		if !errors.As(err, &e) || e.Kind != ipc.ErrIdPUnavailable || e.RetryAfter <= 0 {
			t.Errorf("%s: %v (%+v); want ErrIdPUnavailable with a Retry-After", name, err, e)
		}
	}
	if n := h.requests(); n != 1 {
		t.Errorf("IdP requests = %d, want 1 (the second caller is held)", n)
	}

	h2 := newHarness(t, "")
	hold := make(chan struct{})
	defer close(hold)
	h2.srv.SetFault(idptest.Fault{Hold: hold})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = h2.agent.Token(ctx, self, "p", 0)
	suiteLog.err(t, err)
	if !errors.Is(err, ipc.ErrTimeout) {
		t.Errorf("Token past the caller's own deadline = %v, want ErrTimeout", err)
	}
}

// TestHostileTokenTextIsNeverServed: an IdP (or anything posing as one)
// that returns a token able to break out of a header, a shell line or a
// curl config, or a token_type carrying a header, gets the fetch failed
// with a clear error; nothing is served, and the text reaches no log.
func TestHostileTokenTextIsNeverServed(t *testing.T) {
	for name, body := range map[string]string{
		"token with quote and newline": `{"access_token":"eyJ\"\nurl = \"file:///etc/passwd","token_type":"Bearer","expires_in":3600}`,
		"token with a space":           `{"access_token":"eyJ abc","token_type":"Bearer","expires_in":3600}`,
		"token_type with CRLF":         `{"access_token":"eyJabc","token_type":"Bearer\r\nX-Injected: 1","expires_in":3600}`,
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "")
			h.srv.SetFault(idptest.Fault{Body: []byte(body)})
			tok, err := h.token(0)
			if err == nil {
				t.Fatalf("Token = %+v, want the fetch refused", tok)
			}
			if !errors.Is(err, ipc.ErrIdPUnavailable) || strings.ContainsAny(err.Error(), "\r\n") || strings.Contains(err.Error(), "eyJ") {
				t.Errorf("Token = %v; want ErrIdPUnavailable whose text holds no part of the answer", err)
			}
			if logs := suiteLog.textFor(t); strings.Contains(logs, "X-Injected") || strings.Contains(logs, "etc/passwd") {
				t.Errorf("the hostile text reached the log:\n%s", logs)
			}
		})
	}
	h := newHarness(t, "")
	h.srv.SetFault(idptest.Fault{Body: []byte(`{"access_token":"eyJabc","token_type":"bearer","expires_in":3600}`)})
	if tok := h.mustToken(0); tok.TokenType != "Bearer" {
		t.Errorf("token_type %q, want it normalised to Bearer", tok.TokenType)
	}
}

// TestIdPEchoOfTheSecretIsRedacted: an IdP whose error_description echoes
// the request (client_secret=…, the Basic credential, the assertion) does
// not get the secret into the log, the caller's error or the status.
func TestIdPEchoOfTheSecretIsRedacted(t *testing.T) {
	for _, method := range []string{"basic", "post"} {
		t.Run(method, func(t *testing.T) {
			extra := ""
			if method == "post" {
				extra = `auth = "client_secret_post"`
			}
			h := newHarness(t, extra)
			creds := base64.StdEncoding.EncodeToString([]byte("c:" + url.QueryEscape(testSecret)))
			echo := fmt.Sprintf("bad request: grant_type=client_credentials&client_id=c&client_secret=%s; Authorization: Basic %s; raw %s",
				url.QueryEscape(testSecret), creds, testSecret)
			h.srv.SetFault(idptest.Fault{Status: 400, Error: "invalid_request", Description: echo})
			_, err := h.token(0)
			if err == nil {
				t.Fatal("want the IdP's error")
			}
			for _, leaked := range []string{testSecret, url.QueryEscape(testSecret), creds} {
				if strings.Contains(err.Error(), leaked) || strings.Contains(h.agent.Status()[0].LastError, leaked) || strings.Contains(suiteLog.textFor(t), leaked) {
					t.Errorf("the echoed secret (%.6s…) reached the error, status or log", leaked)
				}
			}
			if !strings.Contains(err.Error(), "[redacted]") {
				t.Errorf("error = %v, want the echo with [redacted] in place of the secret", err)
			}
		})
	}
}

// TestForcedRefreshesAreRateLimited: reporting every token as rejected
// costs the IdP at most one request per forcedRefreshInterval (10 s) per
// profile, not one per report.
func TestForcedRefreshesAreRateLimited(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	tok := h.mustToken(0)
	for range 200 { // a caller that reports whatever it gets, at once
		next, err := h.agent.ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(tok.AccessToken), 0)
		if err != nil {
			t.Fatal(err)
		}
		tok = next
	}
	if n := h.requests(); n != 2 {
		t.Errorf("IdP requests after 200 immediate reports = %d, want 2 (the first token and one forced refresh)", n)
	}
	h.clock.Advance(11 * time.Second)
	if _, err := h.agent.ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(tok.AccessToken), 0); err != nil {
		t.Fatal(err)
	}
	if n := h.requests(); n != 3 {
		t.Errorf("IdP requests after a report 11 s later = %d, want 3", n)
	}
}

// TestRejectDuringOutageKeepsTheValidToken: a report while the IdP
// answers 429 does not drop the still-valid token: the reporter and every
// other caller keep getting it until a replacement arrives.
func TestRejectDuringOutageKeepsTheValidToken(t *testing.T) {
	h := newHarness(t, "")
	held := h.mustToken(0)
	h.srv.SetFault(idptest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "120"})
	got, err := h.agent.ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(held.AccessToken), 0)
	if err != nil || got.AccessToken != held.AccessToken {
		t.Fatalf("report during a 429 = %v; want the still-valid token", err)
	}
	for range 10 {
		if tok := h.mustToken(0); tok.AccessToken != held.AccessToken {
			t.Fatal("another caller got something else than the still-valid token")
		}
	}
	// A second report while the IdP is waited out asks nothing of it.
	before := h.requests()
	h.clock.Advance(11 * time.Second)
	h.agent.ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(held.AccessToken), 0)
	if n := h.requests(); n != before {
		t.Errorf("IdP requests during Retry-After = %d more, want none", n-before)
	}
	h.srv.ClearFault()
	h.clock.Advance(2 * time.Minute)
	if tok := h.mustToken(0); tok.AccessToken == held.AccessToken && h.requests() == before {
		t.Error("no refresh after the IdP recovered")
	}
}

// TestServiceReturnsSecondsAfterAnOutage: callers waiting with no valid
// token trigger one coalesced probe of the IdP every couple of seconds,
// however long the backoff has grown, so service returns within seconds
// of the IdP's recovery (before, up to max_backoff: 135 s after a 75 s
// fault); a Retry-After still wins.
func TestServiceReturnsSecondsAfterAnOutage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		fault      idptest.Fault
		earliest   time.Duration // after recovery, no token before this
		recoveryIn time.Duration // a token by then
	}{
		{"503 for 5 minutes", idptest.Fault{Status: http.StatusServiceUnavailable}, 0, 3 * time.Second},
		{"429 with Retry-After 10", idptest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "10"}, 9 * time.Second, 12 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "")
			h.srv.SetFault(tc.fault)
			for range 300 { // callers keep asking, once a second, through a 5-minute outage
				if _, err := h.token(0); err == nil {
					t.Fatal("token served while the IdP fails and none was held")
				}
				h.clock.Advance(time.Second)
			}
			if n := h.requests(); n > 300/2+1 {
				t.Errorf("IdP requests during the 5-minute outage = %d, want at most one per %v", n, 2*time.Second)
			}
			if tc.fault.RetryAfter != "" {
				// The IdP's last 429 comes just before it recovers: its
				// Retry-After still holds.
				for n := h.requests(); h.requests() == n; h.clock.Advance(time.Second) {
					h.token(0)
				}
			}
			h.srv.ClearFault()
			recovered := h.clock.Now()
			before := h.requests()
			// 50 callers at once, each second: one request at a time.
			for h.clock.Now().Sub(recovered) <= tc.recoveryIn {
				var wg sync.WaitGroup
				var served atomic.Int32
				for range 50 {
					wg.Go(func() {
						if _, err := h.token(0); err == nil {
							served.Add(1)
						}
					})
				}
				wg.Wait()
				if served.Load() > 0 {
					break
				}
				h.clock.Advance(time.Second)
			}
			took := h.clock.Now().Sub(recovered)
			t.Logf("%s: first token %v after the IdP recovered", tc.name, took)
			if took > tc.recoveryIn || took < tc.earliest {
				t.Errorf("first token %v after the IdP recovered, want between %v and %v", took, tc.earliest, tc.recoveryIn)
			}
			if n := h.requests() - before; n > int(took/(2*time.Second))+1 {
				t.Errorf("IdP requests while recovering = %d for 50 callers a second over %v; want one per probe", n, took)
			}
		})
	}
}

// TestIssuerMismatchCountedAsSuch: a discovery document for another issuer
// is counted as its own result, not as the HTTP 200 it came with.
func TestIssuerMismatchCountedAsSuch(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"issuer":"https://elsewhere.example","token_endpoint":"https://elsewhere.example/token"}`))
	}))
	defer ts.Close()
	h := newHarness(t, "")
	a := h.newAgent(fmt.Sprintf("[profiles.d]\nissuer = %q\nclient_id = \"c\"\nclient_secret = %q\n", ts.URL, testSecret))
	if _, err := a.Token(context.Background(), self, "d", 0); err == nil {
		t.Fatal("token from a mismatched issuer")
	}
	if r := a.Status()[0].Results; r["issuer_mismatch"] != 1 || r["http_200"] != 0 {
		t.Errorf("results = %v, want issuer_mismatch: 1", r)
	}
}
