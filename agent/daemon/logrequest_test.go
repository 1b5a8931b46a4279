package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// TestUnidentifiedIsLoggedAsUnidentified (issue 22, attack 1): a request
// whose caller nobody could identify is logged as "caller":"unidentified"
// with the reason, never with a uid (0 made it look like root's); an
// identified caller's line keeps its uid.
func TestUnidentifiedIsLoggedAsUnidentified(t *testing.T) {
	var buf bytes.Buffer
	log := newRequestLog(zerolog.New(&buf), time.Now).observe
	log(door.RequestEvent{Door: "token_endpoint", Unidentified: true, Status: 401, Code: "invalid_client", Denied: true, Detail: "could not identify a caller at 127.0.0.1:40000"})
	log(door.RequestEvent{Door: "token_endpoint", Caller: ipc.Caller{UID: 1000}, Status: 401, Code: "invalid_client", Denied: true})
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	var unknown, known map[string]any
	json.Unmarshal(lines[0], &unknown)
	json.Unmarshal(lines[1], &known)
	if unknown["caller"] != "unidentified" || unknown["uid"] != nil || unknown["detail"] == nil {
		t.Errorf("unidentified caller's line = %s; want caller unidentified, a detail and no uid", lines[0])
	}
	if known["uid"] != float64(1000) || known["caller"] != nil {
		t.Errorf("identified caller's line = %s; want uid 1000", lines[1])
	}
}

// clock is a settable time for logLimit's windows.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// TestDenialFloodIsSummed: a caller looping on a denied profile gets one
// line per window, then a summary with the count of the others; another
// caller's first denial is still written; past logBurst keys, nothing
// more until the window ends.
func TestDenialFloodIsSummed(t *testing.T) {
	atLevel(t, zerolog.InfoLevel)
	var buf bytes.Buffer
	c := &clock{now: time.Unix(1e9, 0)}
	rl := newRequestLog(zerolog.New(&buf), c.Now)
	looping := door.RequestEvent{Door: "socket", Caller: ipc.Caller{UID: 1000, Exe: "/bin/loop"}, Profile: "secret", Status: 404, Code: ipc.CodeUnknownProfile, Denied: true}
	for range 5000 {
		rl.observe(looping)
	}
	other := looping
	other.Caller.UID = 1001
	rl.observe(other)
	for i := range 3 * logBurst { // many callers: the window's room runs out
		ev := looping
		ev.Caller.UID = uint32(2000 + i)
		rl.observe(ev)
	}
	if got := bytes.Count(buf.Bytes(), []byte("\n")); got != logBurst {
		t.Fatalf("%d lines in the first window, want %d (the first of each caller, %d in all):\n%s", got, logBurst, logBurst, buf.String())
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"uid":1001`)) {
		t.Errorf("the second caller's first denial is not logged:\n%s", buf.String())
	}
	buf.Reset()
	c.now = c.now.Add(logWindow)
	rl.flush(false)
	want := 5000 - 1 + 3*logBurst - (logBurst - 2)
	if !bytes.Contains(buf.Bytes(), []byte(fmt.Sprintf(`"suppressed":%d`, want))) || !bytes.Contains(buf.Bytes(), []byte(`"level":"warn"`)) {
		t.Errorf("summary after the window = %s; want a warning counting %d suppressed denials", buf.String(), want)
	}
	buf.Reset()
	rl.observe(looping)
	if !bytes.Contains(buf.Bytes(), []byte(`"request denied"`)) {
		t.Errorf("the looping caller's denial in the next window is not logged: %q", buf.String())
	}
}

// TestHTTPServerErrorsAreBounded: what net/http reports itself goes
// through httpErrorLog as structured warnings, bounded like requests. A
// door's server whose handler panics on every request (net/http logs
// "http: panic serving …" through ErrorLog) answers 1,000 requests on a
// real socket; the log holds JSON lines, at most logBurst.
func TestHTTPServerErrorsAreBounded(t *testing.T) {
	var buf syncBuffer
	c := &clock{now: time.Unix(1e9, 0)}
	limit := newLogLimit("HTTP server errors", zerolog.WarnLevel, c.Now)
	srv := door.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }), door.Timeouts{})
	srv.SetErrorLog(httpErrorLog(zerolog.New(&buf), "socket", limit))
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	for range 1000 {
		if resp, err := hc.Get("http://x/"); err == nil {
			resp.Body.Close()
		}
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || len(lines) > logBurst {
		t.Fatalf("%d lines for 1,000 panics, want 1 to %d:\n%.2000s", len(lines), logBurst, out)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first["level"] != "warn" || !strings.Contains(fmt.Sprint(first["error"]), "http: panic serving") {
		t.Errorf("first line = %.500s (%v); want a JSON warning carrying net/http's text", lines[0], err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// atLevel sets the level loggers write at for the test (the default,
// before any NewLogger, is every level).
func atLevel(t *testing.T, level zerolog.Level) {
	prev := logLevel.Swap(int32(level))
	t.Cleanup(func() { logLevel.Store(prev) })
}

// TestDenialOfAnotherSelectorIsTold: within one window, a caller refused
// by another selector than before gets a line of its own; processes
// refused for the same reason (only their pids differ) share one.
func TestDenialOfAnotherSelectorIsTold(t *testing.T) {
	atLevel(t, zerolog.InfoLevel)
	var buf bytes.Buffer
	rl := newRequestLog(zerolog.New(&buf), time.Now)
	ev := door.RequestEvent{Door: "socket", Caller: ipc.Caller{UID: 1000}, Profile: "client", Status: 404, Code: ipc.CodeUnknownProfile, Denied: true}
	for pid := range 50 {
		ev.Detail = fmt.Sprintf(`allow[0]: exe "/home/alice/copy" is not "/usr/local/bin/client" (pid %d)`, 1000+pid)
		rl.observe(ev)
	}
	ev.Detail = `allow[0]: sha256 of "/usr/local/bin/client" is 5e88, not 9f86 (pid 2000)`
	rl.observe(ev)
	if got := strings.Count(buf.String(), "request denied"); got != 2 {
		t.Errorf("%d denial lines, want 2 (one per reason):\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "sha256 of") {
		t.Errorf("the refusal by digest is not told:\n%s", buf.String())
	}
}

// TestReloadWarnsOfRestartOnlyDoors: a reload that changes the Azure
// identity endpoint or a profile's metadata server, doors opened at
// start, says they need a restart; one that changes neither says nothing.
func TestReloadWarnsOfRestartOnlyDoors(t *testing.T) {
	parse := func(top, profile string) *config.Config {
		t.Helper()
		c, err := config.ParseConfig([]byte(top+"\n[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:S\"\n"+profile), "test.toml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := parse(`azure_identity_endpoint = "127.0.0.1:8740"`, `gcp_metadata = "127.0.0.1:8750"`)
	var buf bytes.Buffer
	warnRestartOnly(old, parse(`azure_identity_endpoint = "127.0.0.1:8741"`, `gcp_metadata = "127.0.0.1:8751"`), zerolog.New(&buf))
	for _, key := range []string{`"setting":"azure_identity_endpoint"`, `"setting":"gcp_metadata"`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("reload log does not warn of %s:\n%s", key, buf.String())
		}
	}
	buf.Reset()
	warnRestartOnly(old, parse(`azure_identity_endpoint = "127.0.0.1:8740"`, `gcp_metadata = "127.0.0.1:8750"`), zerolog.New(&buf))
	if buf.Len() != 0 {
		t.Errorf("an unchanged configuration warned: %s", buf.String())
	}
}
