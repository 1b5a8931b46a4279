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
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// suiteLog knows every secret, assertion and token of the suite, and
// keeps each test's log apart. When a test ends, its own log lines and
// error strings are searched for every secret known by then; a hit fails
// that test, and only that test.
var suiteLog = &leakCheck{logs: map[string]*testLog{}}

type leakCheck struct {
	mu      sync.Mutex
	secrets []string
	servers []*idptest.Server
	logs    map[string]*testLog // by test name
}

// testLog is one test's log: what its loggers wrote, and its errors.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// logFor returns t's log, created (with its leak check) on first use.
func (l *leakCheck) logFor(t *testing.T) *testLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	tl := l.logs[t.Name()]
	if tl == nil {
		tl = &testLog{}
		l.logs[t.Name()] = tl
		t.Cleanup(func() {
			if leaks := l.leaksIn(tl.String()); leaks != "" {
				t.Errorf("secret leak check:\n%s", leaks)
			}
		})
	}
	return tl
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

// err records an error string of t's, for the leak check.
func (l *leakCheck) err(t *testing.T, err error) {
	if err != nil {
		fmt.Fprintf(l.logFor(t), "error: %s\n", err)
	}
}

// textFor is what t's loggers and errors wrote.
func (l *leakCheck) textFor(t *testing.T) string { return l.logFor(t).String() }

// newTestLogger logs into t's own log, tagged with the test's name.
func newTestLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(suiteLog.logFor(t)).With().Str("test", t.Name()).Logger()
}

// leaksIn returns what of the known secrets appears in logs, or "".
func (l *leakCheck) leaksIn(logs string) string {
	l.mu.Lock()
	secrets := append([]string(nil), l.secrets...)
	servers := append([]*idptest.Server(nil), l.servers...)
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
// token, an assertion) any 20 consecutive characters of it.
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
	cfg, err := config.ParseConfig([]byte(toml), "test.toml")
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
	suiteLog.err(h.t, err)
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
