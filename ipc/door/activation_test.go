//go:build unix

package door

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelperActivated is not a test: run by TestActivatedListeners as a
// child with LISTEN_* set and sockets from fd 3, it takes them, prints
// each one's name and address, then answers one connection on each with
// its name.
func TestHelperActivated(t *testing.T) {
	if os.Getenv("DOOR_TEST_ACTIVATED") == "" {
		t.Skip("helper process only")
	}
	acts, err := ActivatedListeners()
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(0)
	}
	for _, a := range acts {
		fmt.Printf("%s %s %s\n", a.Name, a.Listener.Addr().Network(), a.Listener.Addr())
	}
	fmt.Printf("env %q\n", os.Getenv("LISTEN_PID")+os.Getenv("LISTEN_FDS")+os.Getenv("LISTEN_FDNAMES"))
	fmt.Println("done")
	for _, a := range acts {
		c, err := a.Listener.Accept()
		if err != nil {
			os.Exit(1)
		}
		io.WriteString(c, a.Name)
		c.Close()
	}
	os.Exit(0)
}

// TestActivatedListeners: the sd_listen_fds protocol with real inherited
// descriptors, as systemd passes them — a TCP and a Unix listening socket
// at fds 3 and 4, LISTEN_PID set to the child's own pid (by a shell that
// then execs it, as systemd sets it after fork), names in LISTEN_FDNAMES.
// The child takes both under their names, clears the variables, and
// serves on the inherited sockets.
func TestActivatedListeners(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	unix.(*net.UnixListener).SetUnlinkOnClose(false)
	defer unix.Close()
	tf, _ := tcp.(*net.TCPListener).File()
	uf, _ := unix.(*net.UnixListener).File()
	self, _ := os.Executable()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" -test.run='^TestHelperActivated$'`, self)
	cmd.Env = []string{"DOOR_TEST_ACTIVATED=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=token_endpoint:socket", "GORACE=atexit_sleep_ms=0"}
	cmd.ExtraFiles = []*os.File{tf, uf} // fds 3 and 4
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tf.Close()
	uf.Close()
	defer cmd.Wait()
	var lines []string
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("child said %q, then %v", lines, err)
		}
		if line == "done\n" {
			break
		}
		lines = append(lines, strings.TrimSpace(line))
	}
	want := []string{"token_endpoint tcp " + tcp.Addr().String(), "socket unix " + sock, `env ""`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("child took %q, want %q", lines, want)
	}
	// Nobody accepts on the parent's copies: the child answers.
	for _, dial := range [][2]string{{"tcp", tcp.Addr().String()}, {"unix", sock}} {
		c, err := net.Dial(dial[0], dial[1])
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(c)
		c.Close()
		if name := map[string]string{"tcp": "token_endpoint", "unix": "socket"}[dial[0]]; string(got) != name {
			t.Errorf("%s %s answered %q, want %q from the child", dial[0], dial[1], got, name)
		}
	}
}

func TestParseListenEnv(t *testing.T) {
	for _, tc := range []struct {
		pid, fds, names string
		n               int
		wantNames       []string
		wantErr         bool
	}{
		{"", "", "", 0, nil, false},
		{"100", "2", "", 2, []string{"", ""}, false},
		{"100", "2", "socket:token_endpoint", 2, []string{"socket", "token_endpoint"}, false},
		{"101", "2", "a:b", 0, nil, false}, // another process's: not ours to take
		{"x", "2", "", 0, nil, false},
		{"100", "two", "", 0, nil, true},
		{"100", "-1", "", 0, nil, true},
		{"100", "2", "only-one", 0, nil, true},
	} {
		n, names, err := parseListenEnv(tc.pid, tc.fds, tc.names, 100)
		if n != tc.n || strings.Join(names, ",") != strings.Join(tc.wantNames, ",") || (err != nil) != tc.wantErr {
			t.Errorf("parseListenEnv(%q, %q, %q) = %d %q %v; want %d %q, error %v", tc.pid, tc.fds, tc.names, n, names, err, tc.n, tc.wantNames, tc.wantErr)
		}
	}
}
