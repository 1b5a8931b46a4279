package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenagent/tokenagent/cmd/internal/cli"
)

// fakeToken is what a fake agent hands out: a valid-looking token, so
// that only the server check can stop the client from using it.
const fakeToken = "eyJmYWtlIjoidG9rZW4ifQ.eyJzdWIiOiJhdHRhY2tlciJ9.c2ln"

// serveFakeAgent is the child process: another user's agent lookalike.
func serveFakeAgent(sock string) {
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake agent:", err)
		os.Exit(1)
	}
	os.Chmod(sock, 0o666)
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_at":"2099-01-01T00:00:00Z","expires_in":3600}`, fakeToken)
	}))
}

// startFakeAgent runs this test binary as uid, serving a fake agent on a
// socket in a directory that user owns, and returns the socket once it
// is there.
func startFakeAgent(t *testing.T, uid int) string {
	t.Helper()
	dir := filepath.Join(cliDir, fmt.Sprintf("fake-%d", uid))
	os.MkdirAll(dir, 0o755)
	os.Chown(dir, uid, uid)
	sock := filepath.Join(dir, "agent.sock")
	self, _ := os.Executable()
	data, _ := os.ReadFile(self)
	bin := filepath.Join(cliDir, "fake-agent.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"TOKENAGENT_FAKE_AGENT=" + sock, "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("fake agent socket: %v", err)
		}
	}
}

// TestClientRefusesAFakeAgent: a socket served by another user — as a
// fake agent in a planted directory would be — gets nothing asked of it:
// the CLI exits 3 naming the uid, and prints no token. Named with
// TOKENAGENT_AGENT_UID, the same server is used.
func TestClientRefusesAFakeAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the fake agent as another user")
	}
	other, err := user.Lookup("daemon") // a real second user
	if err != nil {
		t.Skip("no user daemon on this host")
	}
	uid, _ := strconv.Atoi(other.Uid)
	sock := startFakeAgent(t, uid)
	for _, format := range []string{"plain", "curl"} {
		stdout, stderr, code := runCLI("token", "demo", "--socket", sock, "--format", format)
		if code != cli.ExitUnreachable || stdout != "" || !strings.Contains(stderr, "uid "+other.Uid) || !strings.Contains(stderr, "TOKENAGENT_AGENT_UID") {
			t.Errorf("token --format %s from another user's server: exit %d, stdout %q, stderr %q; want exit 3 naming uid %s and nothing printed",
				format, code, stdout, stderr, other.Uid)
		}
	}
	t.Setenv("TOKENAGENT_AGENT_UID", other.Uid)
	if stdout, stderr, code := runCLI("token", "demo", "--socket", sock); code != 0 || stdout != fakeToken+"\n" {
		t.Errorf("with TOKENAGENT_AGENT_UID=%s: exit %d, %q %q; want the server used", other.Uid, code, stdout, stderr)
	}
}
