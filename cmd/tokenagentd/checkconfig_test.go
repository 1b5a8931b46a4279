package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
)

// nobody returns the uid and gid of user nobody, skipping the test unless
// it runs as root (only root can give a file away).
func nobody(t *testing.T) (int, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// TestCheckConfigRefusesWhatStartRefuses: each directory start refuses
// (it used to pass check-config with exit 0) is refused by check-config
// too, naming the directory, and the real daemon refuses it as well.
func TestCheckConfigRefusesWhatStartRefuses(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for _, tc := range []struct {
		name   string
		root   bool // needs root (chown)
		stage  func(t *testing.T, confDir, sockDir string)
		refuse string // the directory named
		want   string
	}{
		{name: "configuration directory owned by nobody", root: true, refuse: "conf", want: "configuration directory",
			stage: func(t *testing.T, confDir, _ string) {
				uid, gid := nobody(t)
				if err := os.Chown(confDir, uid, gid); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "configuration directory mode 0777", refuse: "conf", want: "writable by group or others",
			stage: func(t *testing.T, confDir, _ string) { chmod(t, confDir, 0o777) }},
		{name: "socket directory mode 0777", refuse: "sock", want: "socket directory",
			stage: func(t *testing.T, _, sockDir string) { chmod(t, sockDir, 0o777) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			confDir, sockDir := filepath.Join(base, "conf"), filepath.Join(base, "sock")
			for _, d := range []string{confDir, sockDir} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			cfgPath := filepath.Join(confDir, "agent.toml")
			writeConfig(t, cfgPath, "store = \"memory\"\n"+profileTOML("p", "https://idp.example/token", "c"))
			socket := filepath.Join(sockDir, "agent.sock")
			tc.stage(t, confDir, sockDir)

			stdout, stderr, code := runCLI("check-config", cfgPath, "--socket", socket)
			if code != cli.ExitFailure || !strings.Contains(stderr, filepath.Join(base, tc.refuse)) || !strings.Contains(stderr, tc.want) {
				t.Errorf("check-config: exit %d\n%s%s\nwant exit 1 naming %s and %q", code, stdout, stderr, filepath.Join(base, tc.refuse), tc.want)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // only a bound on a daemon that would serve
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "--config", cfgPath, "--socket", socket).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != cli.ExitFailure || !strings.Contains(string(out), filepath.Join(base, tc.refuse)) {
				t.Errorf("tokenagentd: %v\n%s\nwant exit 1 naming %s, as check-config", err, out, filepath.Join(base, tc.refuse))
			}
		})
	}
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfigAsServiceUser: a secret file only root can read passes
// when root checks it as itself, and is refused, naming the file, the
// user and what to do, when checked as the user the service runs as.
func TestCheckConfigAsServiceUser(t *testing.T) {
	t.Parallel()
	nobody(t)
	// Under testDir (0755), so that nobody can reach the file itself.
	base, err := os.MkdirTemp(testDir, "as-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	chmod(t, base, 0o755)
	secret := filepath.Join(base, "client.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(base, "agent.toml")
	writeConfig(t, cfgPath, fmt.Sprintf("store = \"memory\"\n[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"file:%s\"\n", secret))
	socket := filepath.Join(base, "agent.sock")

	if stdout, stderr, code := runCLI("check-config", cfgPath, "--socket", socket, "--as", "root"); code != 0 {
		t.Fatalf("check-config --as root: exit %d\n%s%s", code, stdout, stderr)
	}
	// The configuration itself (0600, root's): the service could not read it.
	if stdout, stderr, code := runCLI("check-config", cfgPath, "--socket", socket, "--as", "nobody"); code != cli.ExitFailure ||
		!strings.Contains(stderr, "config "+cfgPath+": has mode 0600") || !strings.Contains(stderr, "user nobody") {
		t.Errorf("check-config --as nobody with a root-only configuration: exit %d\n%s%s\nwant exit 1 naming it and the user", code, stdout, stderr)
	}
	chmod(t, cfgPath, 0o644)
	stdout, stderr, code := runCLI("check-config", cfgPath, "--socket", socket, "--as", "nobody")
	for _, want := range []string{secret, "user nobody", "chmod 0640"} {
		if code != cli.ExitFailure || !strings.Contains(stderr, want) {
			t.Errorf("check-config --as nobody with a root-only secret: exit %d\n%s%s\nwant exit 1 and %q", code, stdout, stderr, want)
		}
	}
	if strings.Contains(stdout+stderr, "s3cret") {
		t.Errorf("check-config showed the secret:\n%s%s", stdout, stderr)
	}
	// Readable by the group the service's user is in: ok.
	_, gid := nobody(t)
	if err := os.Chown(secret, 0, gid); err != nil {
		t.Fatal(err)
	}
	chmod(t, secret, 0o640)
	if stdout, stderr, code := runCLI("check-config", cfgPath, "--socket", socket, "--as", "nobody"); code != 0 {
		t.Errorf("check-config --as nobody with a secret of its group, mode 0640: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestCheckConfigDefaultsToPackageUser: run as root with no --as,
// check-config judges as the package's user where it exists (here nobody
// stands in for tokenagent).
func TestCheckConfigDefaultsToPackageUser(t *testing.T) {
	nobody(t)
	base, err := os.MkdirTemp(testDir, "default-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	secret := filepath.Join(base, "client.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(base, "agent.toml")
	writeConfig(t, cfgPath, fmt.Sprintf("store = \"memory\"\n[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"file:%s\"\n", secret))
	defer func(saved string) { packageUser = saved }(packageUser)
	for _, tc := range []struct {
		packageUser string
		code        int
	}{{"", cli.ExitOK}, {"no-such-user-here", cli.ExitOK}, {"nobody", cli.ExitFailure}} {
		packageUser = tc.packageUser
		stdout, stderr, code := runCLI("check-config", cfgPath, "--socket", filepath.Join(base, "agent.sock"))
		if code != tc.code || code != 0 && !strings.Contains(stderr, "user nobody") {
			t.Errorf("check-config as root, package user %q: exit %d\n%s%s\nwant exit %d", tc.packageUser, code, stdout, stderr, tc.code)
		}
	}
}

// TestCheckConfigOnlineWritesNothing: --online gets a token from the IdP
// and writes it nowhere: a profile's file sink stays absent (it used to
// receive the token, though the help says it is discarded).
func TestCheckConfigOnlineWritesNothing(t *testing.T) {
	t.Parallel()
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "daemon-secret", Method: "client_secret_basic"})
	dir := t.TempDir()
	sink := filepath.Join(dir, "tokens", "p")
	cfgPath := filepath.Join(dir, "agent.toml")
	writeConfig(t, cfgPath, "store = \"memory\"\n"+profileTOML("p", idp.TokenURL, "c")+fmt.Sprintf("[[profiles.p.files]]\npath = %q\n", sink))
	stdout, stderr, code := runCLI("check-config", cfgPath, "--socket", filepath.Join(dir, "agent.sock"), "--online")
	if code != 0 || !strings.Contains(stdout, "profile p: ok") {
		t.Fatalf("check-config --online: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(sink); !os.IsNotExist(err) {
		b, _ := os.ReadFile(sink)
		t.Errorf("check-config --online wrote the sink %s (%d bytes); want nothing written", sink, len(b))
	}
}

// TestCheckConfigClientAssertion: check-config reads a profile's
// platform token as a fetch would, and fails naming the profile and the
// file — never quoting what is in it.
func TestCheckConfigClientAssertion(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          string
	}{
		{"garbage", "Zm9vYmFyYmF6cXV4LW5vdC1hLWp3dA", "holds no JWT"},
		{"missing", "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			token := filepath.Join(dir, "platform-token")
			if tc.content != "" {
				writeConfig(t, token, tc.content)
			}
			path := filepath.Join(dir, "agent.toml")
			writeConfig(t, path, fmt.Sprintf("store = \"memory\"\n[profiles.k8s]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_assertion = \"file:%s\"\n", token))
			stdout, stderr, code := runCLI("check-config", path, "--socket", filepath.Join(dir, "agent.sock"))
			out := stdout + stderr
			if code == 0 || !strings.Contains(out, `profile "k8s"`) || !strings.Contains(out, token) || !strings.Contains(out, tc.want) {
				t.Errorf("check-config with a %s client_assertion: exit %d, %q; want a failure naming the profile, %s and %q", tc.name, code, out, token, tc.want)
			}
			if tc.content != "" && strings.Contains(out, tc.content) {
				t.Errorf("check-config quoted the file's content: %q", out)
			}
		})
	}
}
