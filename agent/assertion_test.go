package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/clocktest"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
)

// The platform's side of a federated client: a cluster whose
// service-account tokens an IdP client trusts.
const (
	platformIssuer   = "https://k8s.example/cluster-1"
	platformSubject  = "system:serviceaccount:payments:worker"
	platformAudience = "api://AzureADTokenExchange"
)

// assertionHarness is an agent whose profile "p" authenticates as client
// "fed" with the token a platform keeps in a kubelet-style directory.
type assertionHarness struct {
	*harness
	platform *idptest.Platform
	dir      string // the projected volume
}

func newAssertionHarness(t *testing.T, singleUse bool, extra string) *assertionHarness {
	t.Helper()
	srv := idptest.New()
	t.Cleanup(srv.Close)
	suiteLog.server(srv)
	clock := clocktest.New(start)
	srv.SetClock(clock.Now)
	h := &assertionHarness{harness: &harness{t: t, srv: srv, clock: clock}, platform: idptest.NewPlatform(), dir: t.TempDir()}
	os.Chmod(h.dir, 0o755) // a projected volume: the directories are open, the token file is not
	srv.AddClient(idptest.Client{ID: "fed", Method: "client_assertion", Federated: &idptest.Federated{
		Issuer: platformIssuer, Subject: platformSubject, Audience: platformAudience,
		PublicKey: h.platform.PublicKey(), SingleUse: singleUse,
	}})
	h.agent = h.newAgent(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"fed\"\nclient_assertion = \"file:%s\"\n%s",
		srv.TokenURL, filepath.Join(h.dir, "token"), extra))
	return h
}

// mint is a platform token valid for ttl from the clock's now; the leak
// check knows it.
func (h *assertionHarness) mint(ttl time.Duration) string {
	now := h.clock.Now()
	tok := h.platform.Mint(platformIssuer, platformSubject, platformAudience, now, now.Add(ttl))
	suiteLog.secret(tok)
	return tok
}

// rotate writes content as kubelet does (idptest.Project).
func (h *assertionHarness) rotate(content string) {
	h.t.Helper()
	if err := idptest.Project(h.dir, "token", []byte(content+"\n")); err != nil {
		h.t.Fatal(err)
	}
}

func (h *assertionHarness) sent() string { return h.srv.LastForm("fed").Get("client_assertion") }

func (h *assertionHarness) status() agent.ProfileStatus {
	h.t.Helper()
	st := h.agent.Status()
	if len(st) != 1 {
		h.t.Fatalf("Status() has %d profiles, want 1", len(st))
	}
	return st[0]
}

// forceRefresh reports the current token rejected: the agent fetches anew.
func (h *assertionHarness) forceRefresh(current *agent.Token) (*agent.Token, error) {
	sum := sha256.Sum256([]byte(current.AccessToken))
	tok, err := h.agent.ReportRejected(context.Background(), self, "p", hex.EncodeToString(sum[:]), 0)
	suiteLog.err(h.t, err)
	return tok, err
}

// TestClientAssertionRotation: the IdP takes each platform token once
// (SingleUse), so every fetch succeeding shows that the agent read each
// rotation — through the kubelet's symlink swap — before asking.
func TestClientAssertionRotation(t *testing.T) {
	h := newAssertionHarness(t, true, "")
	first := h.mint(time.Hour)
	h.rotate(first)
	tok := h.mustToken(0)
	if h.sent() != first || h.srv.LastForm("fed").Get("client_id") != "fed" ||
		h.srv.LastForm("fed").Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		t.Fatalf("first request's form = %v, want the platform's first token with client_id fed", h.srv.LastForm("fed"))
	}
	if got, want := h.status().AssertionExpiresAt, start.Add(time.Hour); !got.Equal(want) {
		t.Errorf("status AssertionExpiresAt = %v, want %v", got, want)
	}
	for i := range 3 {
		h.clock.Advance(time.Minute)
		next := h.mint(time.Hour)
		h.rotate(next)
		if tok, _ = h.forceRefresh(tok); h.sent() != next || h.srv.Requests("fed") != i+2 {
			t.Fatalf("rotation %d: sent the new token: %v, IdP requests %d, want %d", i+1, h.sent() == next, h.srv.Requests("fed"), i+2)
		}
		if h.status().LastError != "" {
			t.Fatalf("rotation %d: status error %q", i+1, h.status().LastError)
		}
		h.clock.Advance(10 * time.Second) // forced refreshes are 10 s apart at least
	}
	if got, want := h.status().AssertionExpiresAt, h.clock.Now().Add(-10*time.Second).Add(time.Hour); !got.Equal(want.Truncate(time.Second)) {
		t.Errorf("status AssertionExpiresAt = %v, want the last token's exp %v", got, want)
	}
}

// TestClientAssertionReadAgainNearExp: a token rewritten in place that
// keeps its file's size and mtime (so the stat does not tell) is still
// read again once the held one is within a minute of its exp.
func TestClientAssertionReadAgainNearExp(t *testing.T) {
	h := newAssertionHarness(t, false, "")
	first := h.mint(5 * time.Minute)
	h.rotate(first)
	tok := h.mustToken(0)
	path := filepath.Join(h.dir, "token")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	second := h.mint(5 * time.Minute)
	if len(second) != len(first) {
		t.Fatalf("minted tokens of %d and %d bytes; the test needs equal sizes", len(first), len(second))
	}
	writeFile(t, path, []byte(second+"\n"), 0o600)
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	tok, _ = h.forceRefresh(tok)
	if h.sent() != first {
		t.Fatalf("with the file's stat unchanged and 4 min to the held token's exp, the agent sent another token; want the held one")
	}
	h.clock.Advance(3*time.Minute + 30*time.Second) // 30 s to the first's exp
	h.forceRefresh(tok)
	if h.sent() != second {
		t.Errorf("30 s before the held token's exp, the agent did not read the file again")
	}
}

// TestClientAssertionFileErrors: a token the agent cannot send is an
// error that names the profile, the file and what to do — never the
// token — and costs the IdP nothing. Once the platform writes a good one,
// tokens flow again.
func TestClientAssertionFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(h *assertionHarness) // nothing: no file
		want  []string
	}{
		{"missing", func(h *assertionHarness) {}, []string{"no such file", "asks again"}},
		{"expired", func(h *assertionHarness) {
			old := h.mint(time.Minute)
			h.clock.Advance(2 * time.Minute)
			h.rotate(old)
		}, []string{"expired at", "stopped renewing it"}},
		{"not a JWT", func(h *assertionHarness) { h.rotate("<html>Service Unavailable</html>") }, []string{"holds no JWT"}},
		{"no exp", func(h *assertionHarness) {
			h.rotate("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ")
		}, []string{"no exp claim"}},
		{"readable by every user", func(h *assertionHarness) {
			h.rotate(h.mint(time.Hour))
			os.Chmod(filepath.Join(h.dir, "token"), 0o644) // through the symlinks
		}, []string{"0644", "chmod o-r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newAssertionHarness(t, false, "")
			tc.write(h)
			_, err := h.token(0)
			if err == nil {
				t.Fatal("Token() = nil error, want the file's problem")
			}
			for _, w := range append([]string{`profile "p"`, "client_assertion", filepath.Join(h.dir, "token")}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Token() error %q does not mention %q", err, w)
				}
			}
			if err := h.agent.CheckAssertions(); err == nil || !strings.Contains(err.Error(), `profile "p"`) {
				t.Errorf("CheckAssertions() = %v, want the profile's problem", err)
			}
			if n := h.srv.TotalRequests(); n != 0 {
				t.Errorf("IdP requests = %d, want 0: a token that cannot be sent is not sent", n)
			}
			if st := h.status(); !strings.Contains(st.LastError, "client_assertion") {
				t.Errorf("status LastError = %q, want the file's problem", st.LastError)
			}
			h.clock.Advance(config.DefaultTiming().MaxBackoff.Duration) // past any backoff
			h.rotate(h.mint(time.Hour))
			if _, err := h.token(0); err != nil {
				t.Errorf("Token() after the platform wrote a good token: %v", err)
			}
		})
	}
}

// TestClientAssertionEchoRedacted: an IdP that quotes the assertion (and
// the whole form) in its error text reaches no error, status or log with
// it.
func TestClientAssertionEchoRedacted(t *testing.T) {
	h := newAssertionHarness(t, false, "")
	tok := h.mint(time.Hour)
	h.rotate(tok)
	h.srv.SetFault(idptest.Fault{Status: 401, Error: "invalid_client", Description: "federated credential rejected", Echo: true})
	_, err := h.token(0)
	if err == nil || !strings.Contains(err.Error(), "federated credential rejected") || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("Token() = %v, want the IdP's error with its echo redacted", err)
	}
	parts := strings.Split(tok, ".")
	for _, text := range []string{err.Error(), h.status().LastError, suiteLog.textFor(t)} {
		for _, secret := range []string{tok, parts[1], parts[2]} {
			if strings.Contains(text, secret) {
				t.Errorf("the assertion (or a part of it) reached %.200q", text)
			}
		}
	}
}

// TestClientAssertionReuseRefused: an IdP that takes each assertion once
// refuses the platform's token at the second fetch when the platform has
// not rotated it. The error says so; the refusal is held like any
// permanent one, and callers' requests do not reach the IdP again.
func TestClientAssertionReuseRefused(t *testing.T) {
	h := newAssertionHarness(t, true, "")
	h.rotate(h.mint(24 * time.Hour))
	tok := h.mustToken(0)
	h.clock.Advance(10 * time.Second)
	_, err := h.forceRefresh(tok)
	suiteLog.err(t, err)
	st := h.status()
	if !strings.Contains(st.LastError, "jti missing or replayed") || !strings.Contains(st.LastError, "takes each one once") {
		t.Fatalf("status LastError = %q, want the IdP's refusal and the reuse explained", st.LastError)
	}
	h.clock.Advance(2 * time.Hour) // the first token has expired: callers wait on the refusal
	before := h.srv.TotalRequests()
	for range 5 {
		if _, err := h.token(0); err == nil || !strings.Contains(err.Error(), "takes each one once") {
			t.Fatalf("Token() = %v, want the held refusal", err)
		}
	}
	if got := h.srv.TotalRequests() - before; got > 1 {
		t.Errorf("IdP requests for 5 callers after a held refusal = %d, want at most 1 (the retry after permanent_backoff)", got)
	}

	// The platform writes a new token: the refusal was of the old one, so
	// the next caller asks the IdP at once, not after permanent_backoff.
	h.rotate(h.mint(24 * time.Hour))
	before = h.srv.TotalRequests()
	if _, err := h.token(0); err != nil {
		t.Fatalf("Token() after the platform wrote a new assertion = %v, want a token (the refusal forgotten)", err)
	}
	if got := h.srv.TotalRequests() - before; got != 1 {
		t.Errorf("IdP requests after the rotation = %d, want 1", got)
	}
}

// TestClientAssertionRotationKeepsStoredToken: the fingerprint names the
// file, not its content: an agent restarted after a rotation serves the
// stored token without asking the IdP.
func TestClientAssertionRotationKeepsStoredToken(t *testing.T) {
	h := newAssertionHarness(t, false, "")
	h.rotate(h.mint(time.Hour))
	storeDir := t.TempDir()
	body := fmt.Sprintf("store = %q\nstore_key = \"file:%s\"\n[profiles.p]\ntoken_url = %q\nclient_id = \"fed\"\nclient_assertion = \"file:%s\"\n",
		filepath.Join(storeDir, "tokens.db"), filepath.Join(storeDir, "store.key"), h.srv.TokenURL, filepath.Join(h.dir, "token"))
	writeFile(t, filepath.Join(storeDir, "store.key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	cfg, err := config.ParseConfig([]byte(body), filepath.Join(storeDir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	logger := newTestLogger(t)
	first, err := agent.Open(cfg, agent.Options{Clock: h.clock, Logger: &logger})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := first.Token(context.Background(), self, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	h.rotate(h.mint(time.Hour))
	second, err := agent.Open(cfg, agent.Options{Clock: h.clock, Logger: &logger})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	again, err := second.Token(context.Background(), self, "p", 0)
	if err != nil || again.AccessToken != tok.AccessToken || h.srv.Requests("fed") != 1 {
		t.Errorf("after a rotation and a restart: same token %v, IdP requests %d, err %v; want the stored token and 1 request", err == nil && again.AccessToken == tok.AccessToken, h.srv.Requests("fed"), err)
	}
}
