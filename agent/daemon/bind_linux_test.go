package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/clientlib"
)

// squatterUID is the other local user the tests' squatter runs as (not
// the overflow uid: a real, distinct user).
const squatterUID = 4242

// TestHelperSquat is not a test: run as a child with DAEMON_TEST_SQUAT
// set, it listens on that TCP address, says "listening" (or "refused:
// …"), and holds the port until its stdin closes.
func TestHelperSquat(t *testing.T) {
	addr := os.Getenv("DAEMON_TEST_SQUAT")
	if addr == "" {
		t.Skip("helper process only")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Printf("refused: %v\n", err)
		os.Exit(0)
	}
	fmt.Println("listening")
	bufio.NewReader(os.Stdin).ReadString('\n')
	ln.Close()
	os.Exit(0)
}

// squat runs TestHelperSquat as uid squatterUID on addr; it returns the
// child's first line and a function that ends the child (closing its
// port) and waits for it.
func squat(t *testing.T, addr string) (line string, release func()) {
	t.Helper()
	return runAs(t, "TestHelperSquat", "DAEMON_TEST_SQUAT="+addr)
}

// runAs runs the test binary's helper test as uid squatterUID with env.
func runAs(t *testing.T, helper, env string) (line string, release func()) {
	t.Helper()
	self, _ := os.Executable()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "squatter-") // not t.TempDir: its parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "squatter.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+helper+"$")
	cmd.Env = []string{env, "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: squatterUID, Gid: squatterUID, Groups: []uint32{}}}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { stdin.Close(); cmd.Wait() }) }
	t.Cleanup(release)
	line, err = bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("%s as uid %d (%s): %v", helper, squatterUID, env, err)
	}
	return strings.TrimSpace(line), release
}

// freePort is a TCP port free on both loopback addresses now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port))
		ln.Close()
		if err == nil {
			ln6.Close()
			return port
		}
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return 0
}

// bindDaemon is the fixture's daemon with a short bind retry (the tests
// wait on health, not on time).
func bindDaemon(t *testing.T, f fixture) *daemon.Daemon {
	t.Helper()
	cfg, err := secretref.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	d, err := daemon.New(daemon.Options{Config: cfg, ConfigPath: f.config, Socket: f.socket, Logger: &log, NoSignals: true, BindRetry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// doorState is health's entry for a door's address ("" when absent).
func doorState(t *testing.T, c *clientlib.Client, door, addr string) (state, why string) {
	t.Helper()
	h, err := c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range h.Doors {
		if d.Door == door && d.Address == addr {
			return d.State, d.Error
		}
	}
	return "", ""
}

// tokenOverTCP asks the token endpoint at base for profile p as root.
func tokenOverTCP(base string) (int, error) {
	resp, err := http.PostForm(base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"p"}})
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestSquattedEndpointDoesNotStopTheAgent (issue 22, attack 3): another
// user holding 127.0.0.1:PORT while the agent is down used to stop the
// whole agent, the socket included. Now the agent starts, its socket
// serves, /v1/health names the door, the address and the squatter's uid
// as down, the other family is held, and once the squatter exits the
// endpoint comes up by itself.
func TestSquattedEndpointDoesNotStopTheAgent(t *testing.T) {
	port := freePort(t)
	v4, v6 := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port)
	line, release := squat(t, v4)
	if line != "listening" {
		t.Fatalf("squatter on %s: %s", v4, line)
	}
	f := newFixture(t, fmt.Sprintf("token_endpoint = %q", v4))
	a, stop := serve(t, bindDaemon(t, f))
	defer stop()
	c := &clientlib.Client{Socket: f.socket}
	defer c.Close()
	if _, err := c.Token(context.Background(), "p"); err != nil {
		t.Fatalf("Token over the socket with the endpoint's port squatted = %v, want a token", err)
	}
	_ = a
	state, why := doorState(t, c, "token_endpoint", v4)
	if state != "down" || !strings.Contains(why, v4) || !strings.Contains(why, fmt.Sprint("uid ", squatterUID)) {
		t.Errorf("health for token_endpoint %s = %q %q; want down, naming the address and uid %d", v4, state, why, squatterUID)
	}
	if state, why := doorState(t, c, "token_endpoint", v6); state != "up" {
		t.Errorf("health for token_endpoint %s = %q %q; want up (the agent holds the other family)", v6, state, why)
	}
	release()
	deadline := time.Now().Add(30 * time.Second) // generous: the retry is 20ms
	for {
		if state, _ := doorState(t, c, "token_endpoint", v4); state == "up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token_endpoint %s still not up after the squatter left", v4)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, err := tokenOverTCP("http://" + v4); err != nil || code != http.StatusOK {
		t.Errorf("token over %s after the squatter left = %d %v, want 200", v4, code, err)
	}
}

// TestEndpointHoldsBothLoopbackFamilies (issue 22, attack 3): with
// token_endpoint on 127.0.0.1 (or ::1), another user could take the same
// port in the other family, where clients that resolve localhost to it
// went. The agent holds both: the squatter is refused, and localhost
// reaches the agent in either family.
func TestEndpointHoldsBothLoopbackFamilies(t *testing.T) {
	for _, family := range []struct{ configured, other string }{{"127.0.0.1:%d", "[::1]:%d"}, {"[::1]:%d", "127.0.0.1:%d"}} {
		port := freePort(t)
		configured, other := fmt.Sprintf(family.configured, port), fmt.Sprintf(family.other, port)
		t.Run(configured, func(t *testing.T) {
			f := newFixture(t, fmt.Sprintf("token_endpoint = %q", configured))
			_, stop := serve(t, bindDaemon(t, f))
			defer stop()
			if line, _ := squat(t, other); !strings.HasPrefix(line, "refused") {
				t.Fatalf("another user listening on %s while the agent serves %s: %s, want refused", other, configured, line)
			}
			for _, addr := range []string{configured, other} {
				if code, err := tokenOverTCP("http://" + addr); err != nil || code != http.StatusOK {
					t.Errorf("token over %s = %d %v, want 200 from the agent", addr, code, err)
				}
			}
		})
	}
}
