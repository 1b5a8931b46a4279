package sink_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/sink"
	"github.com/tokenagent/tokenagent/ipc"
)

// TestWriteReplacesAndRemoves: the file gets the token in its format and
// mode, a link planted at the path is replaced rather than followed, and
// removing a file that is gone is not an error.
func TestWriteReplacesAndRemoves(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	path := filepath.Join(dir, "token")
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	f := sink.File{Path: path, Format: "plain", Mode: 0o640, UID: -1, GID: -1}
	now := time.Now()
	if err := f.Write(ipc.TokenResponse{AccessToken: "tok-1", TokenType: "Bearer", ExpiresAt: now.Add(time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(data)) != "tok-1" {
		t.Errorf("token file = %q, %v; want tok-1", data, err)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
		t.Errorf("token file mode = %v, %v; want a regular file, 0640", fi.Mode(), err)
	}
	if kept, _ := os.ReadFile(victim); string(kept) != "keep" {
		t.Errorf("the link's target was written: %q", kept)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(); err != nil {
		t.Errorf("Remove of a file already gone = %v", err)
	}
}
