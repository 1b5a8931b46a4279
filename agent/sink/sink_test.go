package sink_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/sink"
	"github.com/tokenagent/tokenagent/ipc"
)

var now = time.Now()

func token(s string) ipc.TokenResponse {
	return ipc.TokenResponse{AccessToken: s, TokenType: "Bearer", ExpiresAt: now.Add(time.Hour)}
}

// TestWriteMakesReplacesAndRemoves: a missing sink directory is made
// (0750, the agent's own), the file gets the token in its format and
// mode, a second write replaces the agent's own file, and removing a file
// that is gone is not an error.
func TestWriteMakesReplacesAndRemoves(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tokens")
	path := filepath.Join(dir, "token")
	f := sink.File{Path: path, Format: "plain", Mode: 0o640, UID: -1, GID: -1}
	if err := f.Check(); err != nil {
		t.Fatalf("Check with the directory still to make = %v", err)
	}
	for _, tok := range []string{"tok-1", "tok-2"} {
		if err := f.Write(token(tok), now); err != nil {
			t.Fatal(err)
		}
		if data, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(data)) != tok {
			t.Errorf("token file = %q, %v; want %s", data, err, tok)
		}
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
		t.Errorf("token file mode = %v, %v; want a regular file, 0640", fi.Mode(), err)
	}
	if fi, err := os.Lstat(dir); err != nil || fi.Mode().Perm() != 0o750 || int(fi.Sys().(*syscall.Stat_t).Uid) != os.Geteuid() {
		t.Errorf("made sink directory: %v, %v; want 0750, the agent's", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries; temporary files were left behind", len(entries))
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(); err != nil {
		t.Errorf("Remove of a file already gone = %v", err)
	}
}

// TestRefusesWhatTheAgentDidNotWrite: whatever stands at the sink's path
// that is not a file the agent wrote — a link, a pipe, another user's
// file, a hard link to a file elsewhere, a file others may write — is
// neither replaced nor removed, and the refusal names the path; so is a
// sink directory others may write, sticky or not.
func TestRefusesWhatTheAgentDidNotWrite(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		plant      func(t *testing.T, dir, path string)
	}{
		{"symbolic link", "symbolic link", func(t *testing.T, dir, path string) {
			os.WriteFile(filepath.Join(dir, "victim"), []byte("keep"), 0o600)
			must(t, os.Symlink(filepath.Join(dir, "victim"), path))
		}},
		{"named pipe", "named pipe", func(t *testing.T, dir, path string) { must(t, syscall.Mkfifo(path, 0o600)) }},
		{"hard link", "2 links", func(t *testing.T, dir, path string) {
			os.WriteFile(filepath.Join(dir, "victim"), []byte("keep"), 0o600)
			must(t, os.Link(filepath.Join(dir, "victim"), path))
		}},
		{"file others may write", "writable by group or others", func(t *testing.T, dir, path string) {
			os.WriteFile(path, []byte("keep"), 0o600)
			must(t, os.Chmod(path, 0o666))
		}},
		{"another user's file", "did not write", func(t *testing.T, dir, path string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file away")
			}
			os.WriteFile(path, []byte("keep"), 0o600)
			must(t, os.Chown(path, 1, 1))
		}},
		{"sticky directory anyone may write", "writable by group or others", func(t *testing.T, dir, path string) {
			must(t, os.Chmod(dir, os.ModeSticky|0o777))
			os.WriteFile(path, []byte("keep"), 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "token")
			tc.plant(t, dir, path)
			before, _ := os.Lstat(path)
			f := sink.File{Path: path, Format: "plain", Mode: 0o600, UID: -1, GID: -1}
			for op, err := range map[string]error{"Check": f.Check(), "Write": f.Write(token("tok-1"), now), "Remove": f.Remove()} {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
					t.Errorf("%s with a %s at the sink = %v; want a refusal naming it and %q", op, tc.name, err, tc.want)
				}
			}
			if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) {
				t.Errorf("the planted %s was replaced or removed: %v", tc.name, err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
