package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/clocktest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// suiteLog collects every log line and every error string the suite
// produces; TestMain fails the run if any secret, assertion or token
// issued during the suite appears in it.
var suiteLog = &leakCheck{}

type leakCheck struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	secrets []string
	servers []*idptest.Server
}

func (l *leakCheck) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *leakCheck) secret(s ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, s...)
}

func (l *leakCheck) server(s *idptest.Server) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.servers = append(l.servers, s)
}

func (l *leakCheck) err(err error) {
	if err != nil {
		fmt.Fprintf(l, "error: %s\n", err)
	}
}

// text is everything logged so far.
func (l *leakCheck) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// textFor is what t's loggers wrote.
func (l *leakCheck) textFor(t *testing.T) string {
	var out []string
	for _, line := range strings.Split(l.text(), "\n") {
		if strings.Contains(line, `"test":"`+t.Name()+`"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// newTestLogger logs into the suite log, tagged with the test's name.
func newTestLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(suiteLog).With().Str("test", t.Name()).Logger()
}

// leaks returns what leaked, or "" when nothing did.
func (l *leakCheck) leaks() string {
	l.mu.Lock()
	secrets := append([]string(nil), l.secrets...)
	servers := append([]*idptest.Server(nil), l.servers...)
	logs := l.buf.String()
	l.mu.Unlock()
	for _, s := range servers {
		secrets = append(secrets, s.Issued()...)
	}
	var out []string
	for _, s := range secrets {
		if leaked(logs, s) {
			out = append(out, fmt.Sprintf("leaked into logs or errors: (part of) a value with fingerprint %s", ipc.Fingerprint(s)))
		}
	}
	return strings.Join(out, "\n")
}

// leaked reports whether logs contain secret, or for a long secret (a
// token, an assertion) any 30 consecutive characters of it.
func leaked(logs, secret string) bool {
	const window, step = 20, 10
	if len(secret) <= window {
		return len(secret) >= 6 && strings.Contains(logs, secret)
	}
	for i := 0; i+window <= len(secret); i += step {
		if strings.Contains(logs, secret[i:i+window]) {
			return true
		}
	}
	return false
}

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := suiteLog.leaks(); leaks != "" {
			fmt.Fprintln(os.Stderr, "FAIL: secret leak check:\n"+leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// start is a fixed, whole-second instant for the fake clock.
var start = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// harness is an agent wired to a fresh idptest server and a fake clock.
type harness struct {
	t     *testing.T
	srv   *idptest.Server
	clock *clocktest.Clock
	agent *agent.Agent
}

// testSecret is the client secret every harness client uses: it needs
// form-urlencoding in HTTP Basic.
const testSecret = "s3cr+t/%:x"

// newHarness starts an IdP with a client "c" (client_secret_basic), and an
// agent with profile "p" for it; extra is appended to the profile's table.
func newHarness(t *testing.T, extra string) *harness {
	t.Helper()
	srv := idptest.New()
	t.Cleanup(srv.Close)
	suiteLog.server(srv)
	suiteLog.secret(testSecret)
	clock := clocktest.New(start)
	srv.SetClock(clock.Now)
	srv.AddClient(idptest.Client{ID: "c", Secret: testSecret, Method: "client_secret_basic"})
	h := &harness{t: t, srv: srv, clock: clock}
	h.agent = h.newAgent(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\n%s", srv.TokenURL, testSecret, extra))
	return h
}

// newAgent builds an agent on the harness's clock from a TOML config.
func (h *harness) newAgent(toml string) *agent.Agent {
	h.t.Helper()
	cfg, err := agent.ParseConfig([]byte(toml), "test.toml")
	if err != nil {
		h.t.Fatalf("ParseConfig: %v", err)
	}
	logger := newTestLogger(h.t)
	// Seeded jitter: the backoff and refresh figures asserted below are
	// deterministic, not merely likely.
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	a, err := agent.New(cfg, agent.Options{Clock: h.clock, Logger: &logger, Rand: func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return rng.Float64()
	}})
	if err != nil {
		h.t.Fatalf("agent.New: %v", err)
	}
	h.t.Cleanup(func() { a.Close() })
	return a
}

// token asks for profile p with a 10-second deadline; errors are recorded
// for the leak check.
func (h *harness) token(minValid time.Duration) (*agent.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := h.agent.Token(ctx, self, "p", minValid)
	suiteLog.err(err)
	return tok, err
}

func (h *harness) mustToken(minValid time.Duration) *agent.Token {
	h.t.Helper()
	tok, err := h.token(minValid)
	if err != nil {
		h.t.Fatalf("Token(p) at %v: %v", h.clock.Now().Sub(start), err)
	}
	return tok
}

func (h *harness) requests() int { return h.srv.Requests("c") }

// self is the agent's own user, which may use every profile: the caller
// of engine tests that are not about access.
var self = ipc.Caller{UID: uint32(os.Geteuid())}
