package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kardianos/service"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
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

// sysvRig installs tokenagentd as a SysV service of a name of its own
// (never "tokenagent", which may be the host's), as user nobody, with a
// configuration in a directory nobody can reach; Cleanup stops and
// uninstalls it and removes its log.
type sysvRig struct {
	t               *testing.T
	bin, name, base string
	cfg, socket     string
}

func newSysVRig(t *testing.T) *sysvRig {
	t.Helper()
	if testing.Short() {
		t.Skip("installs a SysV service on this host")
	}
	nobody(t)
	if service.Platform() != "unix-systemv" {
		t.Skipf("the init system here is %s, not SysV", service.Platform())
	}
	for _, tool := range []string{"service", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	r := &sysvRig{t: t, bin: buildBinary(t), name: fmt.Sprintf("tokenagent-test-%d", os.Getpid())}
	var err error
	if r.base, err = os.MkdirTemp(testDir, "sysv-"); err != nil {
		t.Fatal(err)
	}
	chmod(t, r.base, 0o755)
	r.cfg = filepath.Join(r.base, "agent.toml")
	r.socket = filepath.Join(r.base, "run", "agent.sock") // made by the script, for nobody
	t.Cleanup(func() {
		r.service("stop")
		r.service("uninstall")
		os.Remove(sysvLog(r.name))
		os.RemoveAll(r.base)
		for _, p := range []string{sysvScriptPath(r.name), "/run/" + r.name + ".pid", "/run/" + r.name + ".credentials"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s is left behind", p)
			}
		}
	})
	return r
}

// service runs `tokenagentd service ACTION` for the rig's service.
func (r *sysvRig) service(action string, extra ...string) (string, int) {
	args := append([]string{"service", action, "--name", r.name, "--config", r.cfg, "--as", "nobody"}, extra...)
	out, err := exec.Command(r.bin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return string(out), code
}

// TestServiceSysV: without systemd, `service install` writes a SysV
// script that runs the agent as the service's user (it used to run it as
// root, which then refused the package's directories); `service start`
// reports success only once the socket answers, and a daemon that exits
// as a failure with its last log lines (it used to say "start done");
// `service status` says why it is stopped (it used to say only "exit
// status 1"). The service is uninstalled at the end.
func TestServiceSysV(t *testing.T) {
	r := newSysVRig(t)
	store := filepath.Join(r.base, "state", "tokens.db")
	secret := filepath.Join(r.base, "client.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, gid := nobody(t)
	if err := os.Chown(secret, 0, gid); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, r.cfg, fmt.Sprintf("socket = %q\nstore = %q\n[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"file:%s\"\n", r.socket, store, secret))

	// A configuration its user cannot read: refused, saying what to do.
	if out, code := r.service("install"); code != cli.ExitFailure || !strings.Contains(out, r.cfg) || !strings.Contains(out, "user nobody") || !strings.Contains(out, "chmod 0640") {
		t.Fatalf("install with a configuration nobody cannot read: exit %d\n%s", code, out)
	}
	chmod(t, r.cfg, 0o644)
	if out, code := r.service("install"); code != 0 || !strings.Contains(out, "as user nobody") {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	if out, code := r.service("status"); code != 0 || !strings.Contains(out, r.name+": stopped") {
		t.Errorf("status after install: exit %d\n%s", code, out)
	}

	out, code := r.service("start")
	if code != 0 || !strings.Contains(out, "started, serving on "+r.socket) {
		t.Fatalf("start: exit %d\n%s\nlog:\n%s", code, out, tailFile(sysvLog(r.name), -1, 20))
	}
	uid, _ := nobody(t)
	if _, err := (&clientlib.Client{Socket: r.socket, AgentUIDs: []int{uid}}).Health(context.Background()); err != nil {
		t.Fatalf("health after start: %v", err)
	}
	pidText, err := os.ReadFile("/run/" + r.name + ".pid")
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pidText)) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid); !strings.Contains(string(status), want) {
		t.Errorf("the agent runs with\n%s\nwant %q (user nobody)", status, want)
	}
	if out, code := r.service("status"); code != 0 || !strings.Contains(out, r.name+": running") {
		t.Errorf("status while running: exit %d\n%s", code, out)
	}
	if out, code := r.service("uninstall"); code != cli.ExitFailure || !strings.Contains(out, "stop it first") {
		t.Errorf("uninstall while running: exit %d\n%s", code, out)
	}
	if out, code := r.service("stop"); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, out)
	}

	// A store directory others can write: the agent refuses it and exits.
	chmod(t, filepath.Dir(store), 0o777)
	out, code = r.service("start")
	if code != cli.ExitFailure || !strings.Contains(out, "exited before serving") || !strings.Contains(out, "writable by group or others") {
		t.Errorf("start of an agent that exits: exit %d\n%s\nwant exit 1 with the agent's reason", code, out)
	}
	t.Logf("start of an agent that exits:\n%s", out)
	if _, err := os.Stat("/run/" + r.name + ".credentials"); err == nil {
		t.Errorf("the store key handed to the agent is left in /run/%s.credentials after it exited", r.name)
	}
	if out, code := r.service("status"); code != 0 || !strings.Contains(out, r.name+": stopped") || !strings.Contains(out, "writable by group or others") {
		t.Errorf("status of the stopped agent: exit %d\n%s\nwant the reason", code, out)
	}

	if out, code := r.service("uninstall"); code != 0 {
		t.Fatalf("uninstall: exit %d\n%s", code, out)
	}
	links, _ := filepath.Glob("/etc/rc?.d/*" + r.name)
	if _, err := os.Stat(sysvScriptPath(r.name)); err == nil || len(links) > 0 {
		t.Errorf("after uninstall: script %v, links %v; want neither", err, links)
	}
}
