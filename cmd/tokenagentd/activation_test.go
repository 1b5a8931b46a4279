package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
)

// TestSocketActivationServes: tokenagentd started as systemd starts it
// from tokenagent.socket — the listening socket at fd 3, LISTEN_PID set by
// a shell that then execs the daemon, the name in LISTEN_FDNAMES — serves
// tokens on that socket once the parent's copy is closed. Before, the
// daemon's deferred close of the passed sockets no door took was given
// the list as it stood before the doors took theirs: it closed the socket
// the agent had just started serving, and the agent exited.
func TestSocketActivationServes(t *testing.T) {
	t.Parallel() // its own daemon process, directory and socket
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "activated", Secret: "daemon-secret", Method: "client_secret_basic"})
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.toml")
	writeConfig(t, config, fmt.Sprintf("store = %q\n", filepath.Join(dir, "tokens.db"))+profileTOML("activated", idp.TokenURL, "activated"))

	ln, err := net.Listen("unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	f, err := ul.File()
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, func(cmd *exec.Cmd) { cmd.ExtraFiles = []*os.File{f} },
		[]string{"/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`}, config, "LISTEN_FDS=1", "LISTEN_FDNAMES=socket")
	// Only the daemon holds the socket now, as when systemd hands it over.
	f.Close()
	ln.Close()
	d.waitLog(`"message":"socket activation: took a socket from systemd"`)

	c := &clientlib.Client{Socket: d.socket}
	if _, err := c.Token(context.Background(), "activated"); err != nil {
		t.Fatalf("token over the socket systemd passed: %v", err)
	}
	if n := d.logCount("no door serves this socket"); n != 0 {
		t.Errorf("the daemon closed %d socket(s) as unclaimed, want none: the socket door took the one passed", n)
	}
}
