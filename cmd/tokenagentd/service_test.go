package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
)

func TestServiceCommand(t *testing.T) {
	stdout, stderr, code := runCLI("service", "status")
	if code != 0 || !strings.HasPrefix(stdout, "tokenagent: ") {
		t.Errorf("service status: exit %d, %q %q", code, stdout, stderr)
	}
	_, stderr, code = runCLI("service", "frobnicate")
	if code != cli.ExitUsage || !strings.Contains(stderr, `unknown action "frobnicate"`) {
		t.Errorf("service frobnicate: exit %d, %q", code, stderr)
	}
	_, stderr, code = runCLI("service", "install", "--config", filepath.Join(t.TempDir(), "missing.toml"))
	if code != cli.ExitFailure || !strings.Contains(stderr, "no configuration at") {
		t.Errorf("service install with a missing config: exit %d, %q", code, stderr)
	}
}

// TestNotifiesSystemd: with NOTIFY_SOCKET set (Type=notify), the agent
// says READY=1 once it serves, and STOPPING=1 on SIGTERM.
func TestNotifiesSystemd(t *testing.T) {
	idp := idptest.New()
	defer idp.Close()
	dir := t.TempDir()
	notify := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	config := filepath.Join(dir, "agent.toml")
	writeConfig(t, config, "store = \"memory\"\n"+profileTOML("p", idp.TokenURL, "c"))
	d := startDaemon(t, config, "NOTIFY_SOCKET="+notify)
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Errorf("first notification = %q, want READY=1", got)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if got := read(); got != "STOPPING=1" {
		t.Errorf("notification on SIGTERM = %q, want STOPPING=1", got)
	}
}
