package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/clocktest"
	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/clientlib"
)

// TestDaemonFillsSinkAndShowsItStale: a daemon started with a file sink
// and no caller writes the file; with the IdP down past the token's expiry
// the file keeps the token, /v1/health lists the profile as degraded and
// /v1/profiles says the sink is stale (issue 23, item 1).
func TestDaemonFillsSinkAndShowsItStale(t *testing.T) {
	f := newFixture(t, "")
	clock := clocktest.New(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	f.idp.SetClock(clock.Now)
	path := filepath.Join(t.TempDir(), "p.token")
	appendFile(t, f.config, fmt.Sprintf("\n[[profiles.p.files]]\npath = %q\n", path))
	cfg, err := secretref.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	d, err := daemon.New(daemon.Options{Config: cfg, ConfigPath: f.config, Socket: f.socket, Logger: &log, NoSignals: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := serve(t, d)
	defer stop()

	// The file is read again at each change of the engine's state (the
	// start fetch ends after its sinks are written and their expiry
	// noted), for 10 s at most. The file itself is complete a moment
	// before its expiry is noted.
	var data []byte
	for deadline := time.After(10 * time.Second); ; {
		changed := d.Agent().Changed()
		if data, err = os.ReadFile(path); err == nil && len(data) > 1 && !d.Agent().Status()[0].SinkExpiresAt.IsZero() {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no file sink written at start with no caller: %v", err)
		}
	}
	if got := f.idp.Requests("c"); got != 1 {
		t.Errorf("IdP requests at start = %d, want 1", got)
	}

	f.idp.SetFault(idptest.Fault{Status: http.StatusServiceUnavailable})
	clock.Advance(2 * time.Hour) // tokens live an hour
	if now, err := os.ReadFile(path); err != nil || string(now) != string(data) {
		t.Errorf("file sink with the IdP down: %d bytes, %v; want the last token kept", len(now), err)
	}
	c := &clientlib.Client{Socket: f.socket}
	defer c.Close()
	h, err := c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.Degraded, "p") {
		t.Errorf("/v1/health degraded = %v, want p (its file sink is stale)", h.Degraded)
	}
	profiles, err := c.Profiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(profiles) != 1 || !profiles[0].SinkStale || profiles[0].SinkExpiresAt.IsZero() {
		t.Errorf("/v1/profiles = %+v, want p with sink_stale and sink_expires_at", profiles)
	}
}
