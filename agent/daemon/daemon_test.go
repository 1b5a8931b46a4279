package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/agent/sink/sinktest"
	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
	"github.com/tokenagent/tokenagent/store/disktest"
)

type fixture struct {
	dir, config, socket, db string
	idp                     *idptest.Server
}

func newFixture(t *testing.T, top string) fixture {
	t.Helper()
	f := fixture{dir: t.TempDir(), idp: idptest.New()}
	t.Cleanup(f.idp.Close)
	f.idp.AddClient(idptest.Client{ID: "c", Secret: "daemon-test-secret", Method: "client_secret_basic"})
	f.config, f.socket, f.db = filepath.Join(f.dir, "agent.toml"), filepath.Join(f.dir, "run", "agent.sock"), filepath.Join(f.dir, "tokens.db")
	f.write(t, top, "p")
	return f
}

// metrics is /metrics as the socket serves it to this process's user.
func (f fixture) metrics(t *testing.T) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", f.socket)
	}}}
	resp, err := hc.Get("http://" + ipc.Host + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func (f fixture) write(t *testing.T, top string, profiles ...string) {
	t.Helper()
	body := fmt.Sprintf("store = %q\n%s\n", f.db, top)
	for _, p := range profiles {
		body += fmt.Sprintf("[profiles.%s]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"daemon-test-secret\"\n", p, f.idp.TokenURL)
	}
	if err := os.WriteFile(f.config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f fixture) daemon(t *testing.T) *daemon.Daemon {
	t.Helper()
	return f.daemonWith(t, daemon.Options{}, nil)
}

// loggedDaemon is daemonWith opts, logging as tokenagentd does
// (daemon.NewLogger, the configuration's level) into the returned buffer,
// for tests that read or wait for what it says.
func (f fixture) loggedDaemon(t *testing.T, opts daemon.Options) (*daemon.Daemon, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	return f.daemonWith(t, opts, buf), buf
}

// daemonWith makes the fixture's daemon with opts (Config, ConfigPath,
// Socket and NoSignals are the fixture's), logging to logTo (nil: no log).
func (f fixture) daemonWith(t *testing.T, opts daemon.Options, logTo io.Writer) *daemon.Daemon {
	t.Helper()
	cfg, err := secretref.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	if logTo != nil {
		log = daemon.NewLogger(cfg, logTo)
	}
	opts.Config, opts.ConfigPath, opts.Socket, opts.NoSignals, opts.Logger = cfg, f.config, f.socket, true, &log
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// stopped checks that nothing the daemon started is left: the socket is
// gone and the store's lock is free.
func (f fixture) stopped(t *testing.T) {
	t.Helper()
	if c, err := net.Dial("unix", f.socket); err == nil {
		c.Close()
		t.Error("the socket still answers after Run returned")
	}
	if _, err := os.Lstat(f.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind: %v", err)
	}
	keyText, err := os.ReadFile(filepath.Join(f.dir, "store.key"))
	if err != nil {
		return // the store was never opened
	}
	key, _ := store.ParseKey(keyText)
	st, err := store.Open(f.db, store.Options{Key: key})
	if err != nil {
		t.Errorf("store still locked after Run returned: %v", err)
		return
	}
	st.Close()
}

func TestRunServesAndStopsCleanly(t *testing.T) {
	f := newFixture(t, "")
	d := f.daemon(t)
	a, stop := serve(t, d)
	ctx := context.Background()
	self := ipc.Caller{UID: uint32(os.Geteuid())}
	if _, err := a.Token(ctx, self, "p", 0); err != nil {
		t.Fatal(err)
	}
	// Reload, as SIGHUP does: a profile is added.
	f.write(t, "", "p", "q")
	d.Reload()
	for !hasProfile(a.Profiles(self), "q") {
		runtime.Gosched() // Reload is applied by Run's loop; wait for it
	}
	if err := stop(); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	f.stopped(t)
}

// TestTakenMetricsPortStopsNothing: metrics_listen on a port another
// process holds used to fail the start after the socket was serving. A
// door that cannot bind never stops the others: the agent serves, health
// says metrics_listen is down and names the address, and everything is
// stopped when Run returns.
func TestTakenMetricsPortStopsNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	f := newFixture(t, fmt.Sprintf("metrics_listen = %q", addr))
	_, stop := serve(t, f.daemon(t))
	c := &clientlib.Client{Socket: f.socket}
	h, err := c.Health(context.Background())
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Doors) != 1 || h.Doors[0].Door != "metrics_listen" || h.Doors[0].State != "down" || !strings.Contains(h.Doors[0].Error, addr) {
		t.Errorf("health with metrics_listen on a taken port: doors %+v; want metrics_listen %s down, naming it", h.Doors, addr)
	}
	if err := stop(); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	f.stopped(t)
}

// TestRunFailingEarly: a socket path that cannot be used fails Run with
// the path named, and the store opened before it is closed again.
func TestRunFailingEarly(t *testing.T) {
	f := newFixture(t, "")
	if err := os.MkdirAll(f.socket, 0o700); err != nil { // a directory where the socket should be
		t.Fatal(err)
	}
	err := f.daemon(t).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), f.socket) {
		t.Fatalf("Run with a directory at the socket path = %v, want an error naming it", err)
	}
	os.Remove(f.socket)
	f.stopped(t)
}

func TestNewChecksOptions(t *testing.T) {
	cfg, _ := config.ParseConfig([]byte("[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:HOME\"\n"), "x.toml")
	empty, _ := config.ParseConfig([]byte(""), "empty.toml")
	for _, tc := range []struct {
		opts daemon.Options
		want string
	}{
		{daemon.Options{Socket: "/s"}, "no configuration"},
		{daemon.Options{Config: cfg}, "no socket path"},
		{daemon.Options{Config: cfg, Socket: "/s", ConfigPath: "rel/agent.toml"}, "not absolute"},
		{daemon.Options{Config: empty, Socket: "/s"}, "empty.toml: no profiles"},
		{daemon.Options{Config: cfg, Socket: "/" + strings.Repeat("s", 120)}, "is 121 bytes; a Unix socket's path may have at most"},
	} {
		if _, err := daemon.New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
}

func hasProfile(list []agent.ProfileStatus, name string) bool {
	for _, p := range list {
		if p.Name == name {
			return true
		}
	}
	return false
}

// TestPlantedDirectoryRefused: a directory another user made for the
// agent's socket or store (as they could in /tmp) stops the start, naming
// the directory and its owner; so does a directory anyone may write.
// Nothing is created inside it.
func TestPlantedDirectoryRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	other, err := user.Lookup("daemon") // a real second user on Debian and macOS
	if err != nil {
		t.Skip("no user daemon on this host")
	}
	otherUID, _ := strconv.Atoi(other.Uid)
	for _, tc := range []struct {
		name  string
		plant func(f fixture) string // returns the planted directory
		owner int
		mode  os.FileMode
	}{
		{"socket directory owned by another user", func(f fixture) string { return filepath.Dir(f.socket) }, otherUID, 0o755},
		{"socket directory anyone may write", func(f fixture) string { return filepath.Dir(f.socket) }, 0, 0o777},
		{"store directory owned by another user", func(f fixture) string { return filepath.Dir(f.db) }, otherUID, 0o700},
		{"store key directory owned by another user", func(f fixture) string { return filepath.Join(f.dir, "keys") }, otherUID, 0o700},
		{"file sink directory owned by another user", func(f fixture) string { return filepath.Join(f.dir, "tokens") }, otherUID, 0o755},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			switch {
			case strings.Contains(tc.name, "file sink"):
				f.write(t, "", "p")
				appendFile(t, f.config, fmt.Sprintf("[[profiles.p.files]]\npath = %q\n", filepath.Join(f.dir, "tokens", "p")))
			case strings.Contains(tc.name, "store key"):
				f.write(t, fmt.Sprintf("store_key = %q", "file:"+filepath.Join(f.dir, "keys", "store.key")), "p")
			case strings.Contains(tc.name, "store"):
				f.db = filepath.Join(f.dir, "state", "tokens.db")
				f.write(t, "", "p")
			}
			planted := tc.plant(f)
			os.MkdirAll(planted, tc.mode)
			os.Chmod(planted, tc.mode)
			os.Chown(planted, tc.owner, tc.owner)
			err := runUntilReady(f.daemon(t))
			if err == nil || !strings.Contains(err.Error(), planted) {
				t.Fatalf("Run with a planted %s = %v, want a refusal naming %s", tc.name, err, planted)
			}
			if tc.owner != 0 && !strings.Contains(err.Error(), "uid "+other.Uid) {
				t.Errorf("refusal does not name the owner uid %s: %v", other.Uid, err)
			}
			if entries, _ := os.ReadDir(planted); len(entries) != 0 {
				t.Errorf("the agent created %d entries in the planted directory", len(entries))
			}
		})
	}
}

// TestSinkDirMadeAtStart: a file sink's directory missing at start, in
// a sticky directory anyone may write (as /tmp), is made by the agent
// itself before it serves (0750, its own), so an attacker of another uid
// can neither make it first nor move it away after. (The agent used to
// leave it missing, for anyone to make, and its writes failed.)
func TestSinkDirMadeAtStart(t *testing.T) {
	s := sinktest.New(t)
	f := newFixture(t, "")
	dir := filepath.Join(s.Shared, "tokens")
	appendFile(t, f.config, fmt.Sprintf("[[profiles.p.files]]\npath = %q\n", filepath.Join(dir, "p")))
	if err := runUntilReady(f.daemon(t)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("sink directory after start: %v, %v; want a directory of root's, 0750", fi, err)
	}
	if out, err := s.Try("mv " + dir + " " + dir + ".old || mkdir " + dir); err == nil {
		t.Errorf("the attacker replaced the agent's sink directory:\n%s", out)
	}
}

// runUntilReady runs d; if it comes up, stops it and returns nil: for
// tests that expect start-up to fail, without hanging when it does not
// (serve is for tests that expect it to serve).
func runUntilReady(d *daemon.Daemon) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-d.Ready()
	if d.Agent() != nil {
		cancel()
		<-done
		return nil
	}
	return <-done
}

// serve runs d until stop, and returns its engine once it serves; stop
// ends Run and returns what Run returned. A daemon that does not come up
// fails the test with Run's error.
func serve(t *testing.T, d *daemon.Daemon) (a *agent.Agent, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-d.Ready()
	if a = d.Agent(); a == nil {
		cancel()
		t.Fatalf("not serving: %v", <-done)
	}
	return a, func() error { cancel(); return <-done }
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(text)
}

// TestReadOnlyStoreAtStart: a store on a read-only disk does not stop
// the agent (it serves from memory and says so) unless store_required
// is set, when start is refused naming the store and the setting.
func TestReadOnlyStoreAtStart(t *testing.T) {
	fs := disktest.Mount(t, 16)
	f := newFixture(t, "")
	f.db = filepath.Join(fs.Dir, "tokens.db")
	fs.ReadOnly()

	f.write(t, "store_required = true", "p")
	err := f.daemon(t).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), fs.Dir) || !strings.Contains(err.Error(), "store_required") {
		t.Fatalf("Run with store_required and a read-only store = %v; want a refusal naming the store and store_required", err)
	}

	f.write(t, "", "p")
	a, stop := serve(t, f.daemon(t))
	ctx := context.Background()
	if _, err := a.Token(ctx, ipc.Caller{UID: uint32(os.Geteuid())}, "p", 0); err != nil {
		t.Errorf("token with a read-only store: %v", err)
	}
	if h := a.StoreHealth(); h.State != "unavailable" || !strings.Contains(h.Error, "read-only") {
		t.Errorf("store health = %+v; want unavailable, saying read-only", h)
	}
	// What an operator sees: /v1/health (tokenagent status) and /metrics.
	c := &clientlib.Client{Socket: f.socket}
	defer c.Close()
	if h, err := c.Health(ctx); err != nil || h.Store == nil || h.Store.State != "unavailable" || h.Store.Path != f.db {
		t.Errorf("/v1/health = %+v, %v; want the store unavailable, with its path", h.Store, err)
	}
	if body := f.metrics(t); !strings.Contains(body, `tokenagent_store_state{state="unavailable"} 1`) {
		t.Errorf("/metrics does not say the store is unavailable:\n%s", body)
	}
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestHealthTellsTheTruth: /v1/health names the caller's profiles that
// cannot serve (still 200: the agent is alive), says which agent runs with
// what configuration since when; after a restart, a token loaded from the
// store says so (not "never refreshed"); /metrics has the last success.
func TestHealthTellsTheTruth(t *testing.T) {
	f := newFixture(t, "")
	bad := fmt.Sprintf("[profiles.bad]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"wrong-secret\"\n", f.idp.TokenURL)
	appendFile(t, f.config, bad)
	self := ipc.Caller{UID: uint32(os.Geteuid())}
	runOnce := func(check func(a *agent.Agent, c *clientlib.Client)) {
		t.Helper()
		a, stop := serve(t, f.daemon(t))
		c := &clientlib.Client{Socket: f.socket}
		check(a, c)
		c.Close()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	runOnce(func(a *agent.Agent, c *clientlib.Client) {
		a.Token(context.Background(), self, "p", 0)
		a.Token(context.Background(), self, "bad", 0)
		h, err := c.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(h.Degraded, []string{"bad"}) || h.Agent == nil || h.Agent.Config != f.config || h.Agent.StartedAt.IsZero() {
			t.Errorf("/v1/health = degraded %v, agent %+v; want [bad] and the agent's config and start", h.Degraded, h.Agent)
		}
	})
	runOnce(func(a *agent.Agent, c *clientlib.Client) { // restarted: p comes from the store
		profiles, err := c.Profiles(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range profiles {
			if p.Name == "p" && (p.Origin != "store" || p.ObtainedAt.IsZero() || !p.LastRefresh.IsZero()) {
				t.Errorf("after a restart, profile p = %+v; want origin store with its obtained time", p)
			}
		}
	})
}

// reload asks d to reload and waits until it has handled the reload to
// its end (Daemon.Reloaded), every setting applied; log is shown if not.
func reload(t *testing.T, d *daemon.Daemon, log *syncBuffer) {
	t.Helper()
	done := d.Reloaded()
	d.Reload()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("no reload within 10s:\n%s", log.String())
	}
}

// TestLogLevelAppliesOnReload: log_level changed in the file takes effect
// at the next reload, without a restart.
func TestLogLevelAppliesOnReload(t *testing.T) {
	f := newFixture(t, `log_level = "info"`)
	cfg, err := secretref.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	log := daemon.NewLogger(cfg, &buf)
	d, err := daemon.New(daemon.Options{Config: cfg, ConfigPath: f.config, Socket: f.socket, Logger: &log, NoSignals: true})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := serve(t, d)
	defer stop()
	log.Debug().Msg("probe before the reload")
	f.write(t, `log_level = "debug"`, "p")
	reload(t, d, &buf)
	log.Debug().Msg("probe after the reload")
	if out := buf.String(); strings.Contains(out, "probe before") || !strings.Contains(out, "probe after") {
		t.Errorf("log_level did not follow the reload:\n%s", out)
	}
	f.write(t, `log_level = "info"`, "p") // leave the process-wide level as found
	d.Reload()
}

// syncBuffer is a bytes.Buffer safe for the logger's and the test's use.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // closed by the next Write (waitFor's), then nil
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

// waitFor waits until the log holds s, woken by each write rather than
// polling, for at most within; it reports whether the log holds s.
func (b *syncBuffer) waitFor(s string, within time.Duration) bool {
	timeout := time.After(within)
	for {
		b.mu.Lock()
		if strings.Contains(b.buf.String(), s) {
			b.mu.Unlock()
			return true
		}
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		select {
		case <-written:
		case <-timeout:
			return false
		}
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
