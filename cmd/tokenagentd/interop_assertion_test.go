package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

// The platform's tokens against oidc-provider: its private_key_jwt
// client platform-client has the test platform's key as its JWKS, so a
// token the platform signed (iss = sub = the client, aud the issuer, as
// oidc-provider wants) authenticates it. oidc-provider accepts each
// assertion once (ReplayDetection.unique on iss and jti): the platform
// writes a fresh token per rotation, as kubelet does, and the test
// rotates at each fetch. TestInteropClientAssertionReuse shows what the
// agent does when the platform has not.

// platformDir is a projected volume holding the platform's token.
type platformDir struct {
	s      *oidcServer
	dir    string
	minted []string // every token written, for the leak search
}

// startPlatformAgent starts a tokenagentd whose profile authenticates as
// platformClient with the token of a fresh platform directory.
func startPlatformAgent(t *testing.T, profile string) (*oidcServer, *platformDir, *agentProc) {
	t.Helper()
	s := interop(t)
	p := &platformDir{s: s, dir: t.TempDir()}
	p.rotate(t)
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "agent.toml"), p.config(profile))
	return s, p, startDaemon(t, filepath.Join(dir, "agent.toml"))
}

func (p *platformDir) path() string { return filepath.Join(p.dir, "token") }

// rotate writes a fresh token as kubelet does (symlink swap of ..data).
func (p *platformDir) rotate(t *testing.T) {
	t.Helper()
	now := time.Now()
	tok := p.s.platform.Mint(platformClient, platformClient, p.s.Issuer, now, now.Add(10*time.Minute))
	p.minted = append(p.minted, tok)
	if err := idptest.Project(p.dir, "token", []byte(tok+"\n")); err != nil {
		t.Fatal(err)
	}
}

// leaks names where any minted token, or its claims or signature part,
// appears in texts.
func (p *platformDir) leaks(texts map[string]string) []string {
	var out []string
	for where, text := range texts {
		for i, tok := range p.minted {
			parts := strings.Split(tok, ".")
			for _, secret := range []string{tok, parts[1], parts[2]} {
				if strings.Contains(text, secret) {
					out = append(out, fmt.Sprintf("token %d (or part) in %s", i+1, where))
				}
			}
		}
	}
	return out
}

func (p *platformDir) config(profile string) string {
	return fmt.Sprintf("store = \"memory\"\n[profiles.%s]\ntoken_url = %q\nclient_id = %q\nclient_assertion = \"file:%s\"\nscopes = [\"api:read\"]\nresource = [%q]\n"+
		"refresh_at = 0.5\nmin_valid = \"2s\"\n", profile, p.s.Issuer+"/token", platformClient, p.path(), interopResource)
}

// agentCLI runs the real `tokenagent ARGS --socket SOCKET` and returns its output
// and error.
func agentCLI(t *testing.T, socket string, args ...string) (stdout, stderr string, err error) {
	return agentCLIEnv(t, nil, socket, args...)
}

// agentCLIEnv is agentCLI with env added to the environment.
func agentCLIEnv(t *testing.T, env []string, socket string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(buildCLI(t), append(args, "--socket", socket)...)
	cmd.Env = append(os.Environ(), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestInteropClientAssertionRotation: callers keep asking while the
// platform rotates its token twice; every caller gets a token, the agent
// refreshes across each rotation without one refusal, and no platform
// token appears in the agent's log or in status.
func TestInteropClientAssertionRotation(t *testing.T) {
	s, p, d := startPlatformAgent(t, "k8s")

	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		tokens   = map[string]bool{}
		calls    int
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, stderr, err := agentCLI(t, d.socket, "token", "k8s")
				mu.Lock()
				calls++
				if err != nil {
					failures = append(failures, fmt.Sprintf("%v: %s", err, stderr))
				} else {
					tokens[strings.TrimSpace(out)] = true
				}
				mu.Unlock()
			}
		})
	}
	// Each fetch takes the token it finds; the next rotation comes as
	// soon as it is logged, seconds before the agent's next refresh.
	// Every fetch logs "token fetched" or "token fetch failed": the ith
	// such line is the ith fetch's outcome.
	fetched := func(i int) {
		if line := d.waitLogN(`"message":"token fetch`, i); !strings.Contains(line, `"message":"token fetched"`) {
			close(stop)
			wg.Wait()
			t.Fatalf("fetch %d failed: %s", i, line)
		}
	}
	const rotations = 2
	for i := 1; i <= rotations; i++ {
		fetched(i)
		p.rotate(t)
	}
	fetched(rotations + 1)
	close(stop)
	wg.Wait()
	t.Logf("%d caller requests (4 callers), %d fetches, %d platform tokens", calls, rotations+1, len(p.minted))

	if len(failures) > 0 {
		t.Errorf("%d of %d caller requests failed across the rotations; first: %s", len(failures), calls, failures[0])
	}
	if n := d.logCount("token fetch failed"); n != 0 {
		t.Errorf("the agent logged %d failed fetches, want none across kubelet-style rotations", n)
	}
	if len(tokens) < rotations+1 {
		t.Errorf("callers got %d distinct tokens, want at least %d (one per platform token)", len(tokens), rotations+1)
	}
	// The earlier tokens have expired by now (they live seconds); the
	// current one is oidc-provider's, for the platform's client.
	s.verifyLeft(t, tokenViaCLI(t, d.socket, "k8s"), platformClient, "api:read", 0)
	table, _, err := agentCLI(t, d.socket, "status")
	if err != nil || !strings.Contains(table, "assertion expires in") {
		t.Errorf("tokenagent status = %q, %v; want the assertion's expiry", table, err)
	}
	js, _, err := agentCLI(t, d.socket, "status", "--json")
	if err != nil || !strings.Contains(js, `"assertion_expires_at"`) {
		t.Errorf("tokenagent status --json = %q, %v; want assertion_expires_at", js, err)
	}
	if leaks := p.leaks(map[string]string{"the agent's log": d.log(), "status": table, "status --json": js, "caller errors": strings.Join(failures, "\n")}); len(leaks) > 0 {
		t.Errorf("platform tokens leaked: %v", leaks)
	}
}

// TestInteropClientAssertionReuse: the platform never rotates, so the
// agent's refresh sends the token oidc-provider has already taken. The
// refusal is held (invalid_client is permanent): callers learn the cause
// at once, and their requests cost the IdP nothing more.
//
// (A rotation does not lift the hold: the agent asks again after
// permanent_backoff or a reload. Entra accepts a token again until its
// exp, so there this does not arise.)
func TestInteropClientAssertionReuse(t *testing.T) {
	s, p, d := startPlatformAgent(t, "stale")
	if _, stderr, err := agentCLI(t, d.socket, "token", "stale"); err != nil {
		t.Fatalf("first token: %v: %s", err, stderr)
	}
	// The refresh, with the same token. oidc-provider says only
	// "client authentication failed" (its reason, "client assertion
	// tokens must only be used once", stays in its own log); the agent
	// knows the IdP had taken this token before, and says so.
	failed := d.waitLog(`"message":"token fetch failed"`)
	if !strings.Contains(failed, "invalid_client") || !strings.Contains(failed, "takes each one once") {
		t.Fatalf("failed fetch logged as %s; want invalid_client and the reuse explained", failed)
	}
	before := s.tokenRequests(t)
	var outputs []string
	for range 10 {
		// More than the held token has left: only a new one would do.
		_, stderr, err := agentCLI(t, d.socket, "token", "stale", "--min-valid", fmt.Sprintf("%ds", platformTokenTTL-1))
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 || !strings.Contains(stderr, "takes each one once") {
			t.Fatalf("tokenagent token after the refusal: %v: %s; want exit 5 (IdP error) with the cause", err, stderr)
		}
		outputs = append(outputs, stderr)
	}
	if got := s.tokenRequests(t) - before; got != 0 {
		t.Errorf("token requests at oidc-provider for 10 callers after the refusal = %d, want 0 (held for permanent_backoff)", got)
	}
	table, _, _ := agentCLI(t, d.socket, "status")
	if leaks := p.leaks(map[string]string{"the agent's log": d.log(), "status": table, "caller errors": strings.Join(outputs, "\n")}); len(leaks) > 0 {
		t.Errorf("platform tokens leaked: %v", leaks)
	}
}
