package clientlib_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/clientlib/bearer"
)

func TestTransportRetriesOnceAfterRejection(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	var bodies []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Header.Get("Authorization"))
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if len(seen) == 1 {
			w.WriteHeader(http.StatusUnauthorized) // the first token is refused
			return
		}
		io.WriteString(w, "ok")
	}))
	defer api.Close()

	c := &clientlib.Client{}
	before := testIdP.Requests("c")
	// Warm the profile so the rejection is of a token the agent holds.
	if _, err := c.Token(context.Background(), "api"); err != nil {
		t.Fatal(err)
	}
	httpClient := &http.Client{Transport: bearer.Transport(c, "api", nil)}
	resp, err := httpClient.Post(api.URL, "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status after retry = %d, want 200", resp.StatusCode)
	}
	if len(seen) != 2 || seen[0] == seen[1] || !strings.HasPrefix(seen[1], "Bearer ") {
		t.Errorf("API saw Authorization %q, want two different bearer tokens", seen)
	}
	if bodies[1] != "payload" {
		t.Errorf("retried body = %q, want the original payload", bodies[1])
	}
	if got := testIdP.Requests("c") - before; got != 2 {
		t.Errorf("IdP requests = %d, want 2 (the first token, then one refresh)", got)
	}
}

func TestTransportDoesNotReplayUnreplayableBody(t *testing.T) {
	calls := 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer api.Close()
	c := &clientlib.Client{}
	req, _ := http.NewRequest(http.MethodPost, api.URL, io.NopCloser(strings.NewReader("stream")))
	req.GetBody = nil
	resp, err := (&http.Client{Transport: bearer.Transport(c, "zeebe", nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || calls != 1 {
		t.Errorf("unreplayable body: status %d after %d calls, want the 401 after 1", resp.StatusCode, calls)
	}
}

func TestErrors(t *testing.T) {
	c := &clientlib.Client{}
	ctx := context.Background()
	if _, err := c.Token(ctx, "nope"); !errors.Is(err, clientlib.ErrUnknownProfile) {
		t.Errorf("Token(nope) = %v, want ErrUnknownProfile", err)
	}
	_, err := c.Token(ctx, "broken")
	var ie *clientlib.Error
	if !errors.Is(err, clientlib.ErrIdPRefused) || !errors.As(err, &ie) || ie.Code != "invalid_client" {
		t.Errorf("Token(broken) = %v, want ErrIdPRefused with code invalid_client", err)
	}
	if _, err := c.Token(ctx, "zeebe", clientlib.WithMinValid(48*time.Hour)); !errors.Is(err, clientlib.ErrBadRequest) {
		t.Errorf("Token(min_valid 48h) = %v, want ErrBadRequest", err)
	}
	down := &clientlib.Client{Socket: filepath.Join(t.TempDir(), "none.sock")}
	_, err = down.Token(ctx, "zeebe")
	if !errors.Is(err, clientlib.ErrAgentUnavailable) || !strings.Contains(err.Error(), "none.sock") || !strings.Contains(err.Error(), "tokenagentd") {
		t.Errorf("Token on a missing socket = %v, want ErrAgentUnavailable naming it and how to start the agent", err)
	}
}

func TestReuseAndReportRejected(t *testing.T) {
	c := &clientlib.Client{Reuse: time.Minute}
	defer c.Close()
	ctx := context.Background()
	first, err := c.Token(ctx, "zeebe")
	if err != nil {
		t.Fatal(err)
	}
	served := servedCount(t, "zeebe")
	again, _ := c.Token(ctx, "zeebe")
	if again == first || *again != *first {
		t.Errorf("Token again = %p %+v; want an equal copy of %p", again, again, first)
	}
	if n := servedCount(t, "zeebe"); n != served {
		t.Errorf("with Reuse, the agent served %d more tokens; want the token reused in-process", n-served)
	}
	before := testIdP.Requests("c")
	fresh, err := c.ReportRejected(ctx, "zeebe", first.AccessToken)
	if err != nil || fresh.AccessToken == first.AccessToken {
		t.Fatalf("ReportRejected(current) = %v, %v; want a new token", fresh, err)
	}
	if _, err := c.ReportRejected(ctx, "zeebe", first.AccessToken); err != nil {
		t.Fatal(err)
	}
	if got := testIdP.Requests("c") - before; got != 1 {
		t.Errorf("IdP requests for two reports of the same token = %d, want 1", got)
	}
	profiles, err := c.Profiles(ctx)
	if err != nil || len(profiles) != 4 {
		t.Errorf("Profiles() = %v, %v; want 4", profiles, err)
	}
}

// TestDependencies keeps clientlib small: programs that embed it must not
// inherit the agent's storage, logging or service dependencies.
func TestDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if !strings.Contains(string(out), "github.com/tokenagent/tokenagent/ipc\n") {
		t.Fatalf("go list -deps does not list ipc; the check below would mean nothing:\n%s", out)
	}
	// net/http too: its start-up cost is what the CLI, built on this
	// package, cannot afford (clientlib/bearer holds the net/http adapters).
	for _, forbidden := range []string{"go.etcd.io/bbolt", "github.com/rs/zerolog", "github.com/kardianos/service", "github.com/tokenagent/tokenagent/agent",
		"github.com/BurntSushi/toml", "net/http", "golang.org/x/oauth2", "github.com/tokenagent/tokenagent/ipc/localapi"} {
		for _, dep := range strings.Fields(string(out)) {
			if dep == forbidden || strings.HasPrefix(dep, forbidden+"/") {
				t.Errorf("clientlib depends on %s", dep)
			}
		}
	}
}

// TestNoHiddenCache: the zero Client asks the agent every time.
func TestNoHiddenCache(t *testing.T) {
	var c clientlib.Client
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Token(ctx, "zeebe"); err != nil {
		t.Fatal(err)
	}
	before := servedCount(t, "zeebe")
	for range 3 {
		if _, err := c.Token(ctx, "zeebe"); err != nil {
			t.Fatal(err)
		}
	}
	if got := servedCount(t, "zeebe") - before; got != 3 {
		t.Errorf("the agent served %d tokens for 3 calls of the zero Client; want 3 (no in-process cache)", got)
	}
}

// TestConnectionsKeptAndClosed: requests reuse a connection, Close
// releases it, and a connection the agent dropped is replaced unnoticed.
func TestConnectionsKeptAndClosed(t *testing.T) {
	var c clientlib.Client
	ctx := context.Background()
	before := conns.count()
	for range 5 {
		if _, err := c.Token(ctx, "zeebe"); err != nil {
			t.Fatal(err)
		}
	}
	if got := conns.count() - before; got != 1 {
		t.Errorf("5 sequential requests opened %d connections; want 1, kept alive", got)
	}
	c.Close()
	if _, err := c.Token(ctx, "zeebe"); err != nil {
		t.Fatalf("Token after Close: %v", err)
	}
	if got := conns.count() - before; got != 2 {
		t.Errorf("after Close, %d connections in all; want a second one", got)
	}
	c.Close()
}

// servedCount is the agent's tokens-served counter for profile.
func servedCount(t *testing.T, profile string) uint64 {
	t.Helper()
	for _, st := range testRunning.Agent.Status() {
		if st.Name == profile {
			return st.Served
		}
	}
	t.Fatalf("no profile %q", profile)
	return 0
}

// TestTransportKeepsTheTokenOnItsOrigin: a redirect to another origin
// gets the request without the bearer token; one on the same origin keeps
// it.
func TestTransportKeepsTheTokenOnItsOrigin(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	record := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			seen[name] = r.Header.Get("Authorization")
		}
	}
	attacker := httptest.NewServer(record("other origin"))
	defer attacker.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, attacker.URL+"/collect", http.StatusFound)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/landed", http.StatusFound) })
	mux.HandleFunc("/landed", record("same origin"))
	api := httptest.NewServer(mux)
	defer api.Close()

	c := &clientlib.Client{}
	defer c.Close()
	httpClient := &http.Client{Transport: bearer.Transport(c, "zeebe", nil)}
	for _, path := range []string{"/away", "/here"} {
		resp, err := httpClient.Get(api.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := seen["other origin"]; got != "" {
		t.Errorf("the other origin received Authorization %.20q…; want none", got)
	}
	if got := seen["same origin"]; !strings.HasPrefix(got, "Bearer ey") {
		t.Errorf("a same-origin redirect got Authorization %q; want the bearer token", got)
	}
}

func TestTrustedServers(t *testing.T) {
	t.Setenv(clientlib.EnvAgentUID, "4242, 4343")
	c := &clientlib.Client{AgentUIDs: []int{5151}}
	for uid, want := range map[int]bool{0: true, os.Geteuid(): true, 4242: true, 4343: true, 5151: true, 1: false, 65534: false} {
		if got := clientlib.Trusts(c, uid); got != want {
			t.Errorf("trusts(uid %d) = %v, want %v", uid, got, want)
		}
	}
}

// TestTimeoutBoundsCallsAndTokenSource: an agent lookalike that accepts
// connections and never answers. Client.Timeout ends a call on a context
// without a deadline, and bearer's TokenSource (no context of its own)
// uses it too.
func TestTimeoutBoundsCallsAndTokenSource(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "silent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	c := &clientlib.Client{Socket: sock, Timeout: 100 * time.Millisecond}
	defer c.Close()
	if _, err := c.Token(context.Background(), "zeebe"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Token() from a silent agent = %v; want the Timeout's deadline", err)
	}
	if _, err := bearer.TokenSource(c, "zeebe").Token(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("TokenSource.Token() from a silent agent = %v; want the Client's Timeout", err)
	}
}
