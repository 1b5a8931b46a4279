// Package sinktest stages the file-sink attacks of docs/reliability.md
// with a real second user: a shared sticky directory like /tmp, two
// folders of root's as victims, and an attacker process of another uid
// that plants links, files and directories. The tests run as root, the
// agent's user; the attacker is the user "daemon" (a real user on Debian
// and macOS, never the overflow uid).
package sinktest

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Scene is one staged attack's file system.
type Scene struct {
	// Base holds everything, reachable by the attacker.
	Base string
	// Shared is root's and mode 1777, as /tmp is: anyone may make entries
	// in it, only their owner may remove them.
	Shared string
	// Victims are root's folders (0755), each holding a root file "p"
	// that reads "keep": what a root agent must never replace or delete.
	Victims [2]string
	// UID is the attacker's uid, User its name.
	UID  int
	User string
}

// New stages a scene, or skips the test when it cannot (not root, no
// second user).
func New(t *testing.T) *Scene {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run an attacker of another uid")
	}
	u, err := user.Lookup("daemon")
	if err != nil {
		t.Skip("no user daemon on this host")
	}
	s := &Scene{Base: t.TempDir(), User: u.Username}
	s.UID, _ = strconv.Atoi(u.Uid)
	for _, d := range []string{filepath.Dir(s.Base), s.Base} { // t.TempDir's are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.Shared = filepath.Join(s.Base, "shared")
	mkdir(t, s.Shared, os.ModeSticky|0o777)
	for i := range s.Victims {
		s.Victims[i] = filepath.Join(s.Base, "etc"+strconv.Itoa(i+1))
		mkdir(t, s.Victims[i], 0o755)
		if err := os.WriteFile(filepath.Join(s.Victims[i], "p"), []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// Attack runs script with /bin/sh as the attacker and fails the test if
// it fails.
func (s *Scene) Attack(t *testing.T, script string) {
	t.Helper()
	if out, err := s.Try(script); err != nil {
		t.Fatalf("the attacker (uid %d) could not run %q: %v\n%s", s.UID, script, err, out)
	}
}

// Try runs script as the attacker and returns its output and error.
func (s *Scene) Try(script string) ([]byte, error) {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.UID), Gid: uint32(s.UID), Groups: []uint32{}}}
	return cmd.CombinedOutput()
}

// VictimsIntact fails the test if a victim's file was replaced or deleted.
func (s *Scene) VictimsIntact(t *testing.T) {
	t.Helper()
	for _, v := range s.Victims {
		p := filepath.Join(v, "p")
		if data, err := os.ReadFile(p); err != nil || string(data) != "keep" {
			t.Errorf("%s, root's file, now reads %q (%v): the agent wrote or deleted through the attacker's link", p, data, err)
		}
	}
}
