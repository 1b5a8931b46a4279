package agent_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/ipc"
)

func TestReload(t *testing.T) {
	h := newHarness(t, "")
	h.srv.AddClient(idptest.Client{ID: "other", Secret: testSecret, Method: "client_secret_basic"})
	profile := func(name, client, extra string) string {
		return fmt.Sprintf("[profiles.%s]\ntoken_url = %q\nclient_id = %q\nclient_secret = %q\n%s\n", name, h.srv.TokenURL, client, testSecret, extra)
	}
	a := h.newAgent(profile("keep", "c", "") + profile("change", "c", `scopes = ["a"]`) + profile("drop", "c", "") + profile("retime", "c", `min_valid = "40s"`))
	tokens := map[string]string{}
	for _, p := range []string{"keep", "change", "drop", "retime"} {
		tok, err := a.Token(context.Background(), self, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		tokens[p] = tok.AccessToken
	}
	before := h.srv.TotalRequests()

	cfg, err := config.ParseConfig([]byte(profile("keep", "c", "")+profile("change", "c", `scopes = ["b"]`)+profile("retime", "c", `min_valid = "50s"`)+profile("new", "other", "")), "reload.toml")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := a.Reload(cfg)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	want := agent.ReloadSummary{Added: []string{"new"}, Changed: []string{"change", "retime"}, Unchanged: []string{"keep"}, Removed: []string{"drop"}}
	if fmt.Sprint(sum) != fmt.Sprint(want) {
		t.Errorf("Reload() = %+v, want %+v", sum, want)
	}
	get := func(p string) (string, error) {
		tok, err := a.Token(context.Background(), self, p, 0)
		if err != nil {
			return "", err
		}
		return tok.AccessToken, nil
	}
	if tok, _ := get("keep"); tok != tokens["keep"] {
		t.Error("unchanged profile lost its token")
	}
	if tok, _ := get("retime"); tok != tokens["retime"] {
		t.Error("a timing change re-fetched although the token's identity is the same")
	}
	if tok, _ := get("change"); tok == tokens["change"] {
		t.Error("profile with new scopes still serves the old token")
	}
	if _, err := get("drop"); !errors.Is(err, ipc.ErrUnknownProfile) {
		t.Errorf("removed profile: %v, want ErrUnknownProfile", err)
	}
	if _, err := get("new"); err != nil {
		t.Errorf("added profile: %v", err)
	}
	if got := h.srv.TotalRequests() - before; got != 2 {
		t.Errorf("IdP requests after reload = %d, want 2 (change and new only)", got)
	}

	// A broken configuration changes nothing.
	broken, err := config.ParseConfig([]byte(profile("keep", "c", "")+`[profiles.bad]
token_url = "https://idp.example/token"
client_id = "x"
client_secret = "env:TOKENAGENT_TEST_UNSET_VAR"
`), "broken.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Reload(broken)
	suiteLog.err(t, err)
	if err == nil || !strings.Contains(err.Error(), "running configuration stays") || !strings.Contains(err.Error(), "TOKENAGENT_TEST_UNSET_VAR") {
		t.Errorf("Reload(broken) = %v, want rejection naming the problem", err)
	}
	if _, err := get("new"); err != nil {
		t.Errorf("after a rejected reload, profile new: %v", err)
	}
}

func TestReloadClearsPermanentHold(t *testing.T) {
	h := newHarness(t, "")
	h.srv.SetFault(idptest.Fault{Status: 401, Error: "invalid_client"})
	if _, err := h.token(0); err == nil {
		t.Fatal("want invalid_client")
	}
	h.srv.ClearFault() // the operator fixed the secret at the IdP...
	cfg, _ := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\nscopes = [\"fixed\"]\n", h.srv.TokenURL, testSecret)), "fixed.toml")
	if _, err := h.agent.Reload(cfg); err != nil { // ...and reloaded
		t.Fatal(err)
	}
	if _, err := h.token(0); err != nil {
		t.Errorf("after reload the permanent error is still held: %v", err)
	}
}

// TestReloadRacingAnInFlightFetch: a reload that replaces a profile while
// callers wait on its fetch does not strand them: the replaced source's
// answer is dropped and they are served by the successor, under the
// successor's access rules.
func TestReloadRacingAnInFlightFetch(t *testing.T) {
	h := newHarness(t, "")
	hold := make(chan struct{})
	h.srv.SetFault(idptest.Fault{Hold: hold})
	type result struct {
		tok *agent.Token
		err error
	}
	results := make(chan result, 10)
	for range cap(results) {
		go func() {
			tok, err := h.token(0)
			results <- result{tok, err}
		}()
	}
	h.srv.WaitRequests(1) // the fetch is in flight, the callers wait on it
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\nscopes = [\"after-reload\"]\n", h.srv.TokenURL, testSecret)), "changed.toml")
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := h.agent.Reload(cfg); err != nil || len(sum.Changed) != 1 {
		t.Fatalf("Reload = %+v, %v; want p changed", sum, err)
	}
	h.srv.ClearFault()
	close(hold)
	for range cap(results) {
		r := <-results
		if r.err != nil {
			t.Fatalf("caller waiting across the reload: %v", r.err)
		}
		if r.tok.Scope != "after-reload" {
			t.Errorf("caller got a token with scope %q, want the reloaded profile's %q", r.tok.Scope, "after-reload")
		}
	}
	if n := h.requests(); n != 2 {
		t.Errorf("IdP requests = %d, want 2 (the dropped fetch, then one for all callers on the successor)", n)
	}
}

// TestReloadWithOtherParamsDropsTheToken: extra parameters are part of
// what a token is for; a reload that changes them never keeps serving a
// token minted with the old ones.
func TestReloadWithOtherParamsDropsTheToken(t *testing.T) {
	h := newHarness(t, `params = { tenant = "a" }`)
	first := h.mustToken(0)
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\nparams = { tenant = \"b\" }\n", h.srv.TokenURL, testSecret)), "tenant-b.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.agent.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if tok := h.mustToken(0); tok.AccessToken == first.AccessToken {
		t.Error("after params changed, the token minted with the old params is still served")
	}
	if got := h.srv.LastForm("c").Get("tenant"); got != "b" {
		t.Errorf("IdP saw tenant=%q, want b", got)
	}
}

// TestReloadReleasesHoldsOfUnchangedProfiles: a reload is the operator's
// "try again now", also for a profile whose configuration and secrets
// did not change (the fix was at the IdP): its held invalid_client is
// forgotten, and a forced refresh works again.
func TestReloadReleasesHoldsOfUnchangedProfiles(t *testing.T) {
	h := newHarness(t, "")
	tok := h.mustToken(0)
	h.srv.SetFault(idptest.Fault{Status: 401, Error: "invalid_client"})
	h.clock.Advance(11 * time.Second)
	h.agent.ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(tok.AccessToken), 0) // refused: held for permanent_backoff
	h.srv.ClearFault()                                                                           // the operator fixed the client at the IdP...
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\n", h.srv.TokenURL, testSecret)), "same.toml")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := h.agent.Reload(cfg) // ...and reloaded the same configuration
	if err != nil || len(sum.Unchanged) != 1 {
		t.Fatalf("Reload = %+v, %v; want p unchanged", sum, err)
	}
	if st := h.agent.Status()[0]; st.LastError != "" {
		t.Errorf("after the reload the profile still holds %q", st.LastError)
	}
	h.clock.Advance(11 * time.Second)
	fresh, err := h.agent.ReportRejected(context.Background(), self, "p", ipc.TokenSHA256(tok.AccessToken), 0)
	if err != nil || fresh.AccessToken == tok.AccessToken {
		t.Errorf("refresh after the reload = %v (new token: %v); want a new token", err, err == nil && fresh.AccessToken != tok.AccessToken)
	}
}

// TestCountersSurviveReloadOfUnchangedProfiles: a reload that leaves a
// profile as it was keeps its counters (metrics do not reset on SIGHUP).
func TestCountersSurviveReloadOfUnchangedProfiles(t *testing.T) {
	h := newHarness(t, "")
	h.mustToken(0)
	h.mustToken(0)
	before := h.agent.Status()[0]
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\n", h.srv.TokenURL, testSecret)), "same.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.agent.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	after := h.agent.Status()[0]
	if after.Served != before.Served || after.Minted != before.Minted || after.UpstreamRequests != before.UpstreamRequests || before.Served != 2 {
		t.Errorf("counters before %+v, after the reload %+v; want them kept", before, after)
	}
}

// TestReloadRereadsSecretFiles: with client_secret = "file:…", fixing the
// file is enough: the reload reads it again (the configuration itself did
// not change), and the held invalid_client goes with the old secret.
func TestReloadRereadsSecretFiles(t *testing.T) {
	h := newHarness(t, "")
	dir := t.TempDir()
	secretFile := writeFile(t, filepath.Join(dir, "client.secret"), []byte("a-wrong-secret"), 0o600)
	path := writeFile(t, filepath.Join(dir, "agent.toml"), []byte(fmt.Sprintf("[profiles.f]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"file:client.secret\"\n", h.srv.TokenURL)), 0o600)
	cfg, err := secretref.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Token(context.Background(), self, "f", 0); !errors.Is(err, ipc.ErrIdPRefused) {
		t.Fatalf("with the wrong secret: %v, want the IdP's refusal", err)
	}
	writeFile(t, secretFile, []byte(testSecret), 0o600) // the operator fixes the file
	cfg, err = secretref.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Token(context.Background(), self, "f", 0); err != nil {
		t.Errorf("after fixing the secret file and reloading: %v", err)
	}
}
