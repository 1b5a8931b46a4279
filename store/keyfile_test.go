package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/store"
)

// TestCreateKeyFile: a new key file is 0600 in a new 0700 directory and
// holds a key that parses; an existing file is never overwritten; an error
// names the path.
func TestCreateKeyFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "etc", "tokenagent")
	path := filepath.Join(dir, "store.key")
	if err := store.CreateKeyFile(path); err != nil {
		t.Fatalf("CreateKeyFile(%s) = %v", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v, mode %v; want 0600", path, err, fi.Mode().Perm())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("key directory %s: %v, mode %v; want 0700", dir, err, di.Mode().Perm())
	}
	text, _ := os.ReadFile(path)
	if _, err := store.ParseKey(text); err != nil {
		t.Errorf("the new key does not parse: %v", err)
	}

	// Another call, or a file someone else wrote, is left alone.
	if err := store.CreateKeyFile(path); err != nil {
		t.Fatalf("CreateKeyFile over an existing key = %v, want nil", err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(text) {
		t.Error("CreateKeyFile replaced an existing key")
	}
	mine := filepath.Join(dir, "mine.key")
	os.WriteFile(mine, []byte("not a key\n"), 0o640)
	if err := store.CreateKeyFile(mine); err != nil {
		t.Fatalf("CreateKeyFile over a foreign file = %v, want nil", err)
	}
	if got, _ := os.ReadFile(mine); string(got) != "not a key\n" {
		t.Errorf("CreateKeyFile replaced %s with %q", mine, got)
	}

	// A directory that cannot be made (a file is in the way), and one it
	// cannot create in: the errors name the path and the fix.
	blocked := filepath.Join(mine, "store.key")
	if err := store.CreateKeyFile(blocked); err == nil || !strings.Contains(err.Error(), blocked) || !strings.Contains(err.Error(), "0700") {
		t.Errorf("CreateKeyFile(%s) under a file = %v; want an error naming the path and the directory to create", blocked, err)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		locked := filepath.Join(t.TempDir(), "locked")
		os.Mkdir(locked, 0o500)
		bad := filepath.Join(locked, "store.key")
		err := store.CreateKeyFile(bad)
		if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "openssl rand") {
			t.Errorf("CreateKeyFile(%s) in a read-only directory = %v; want an error naming the path and how to create a key", bad, err)
		}
		if _, serr := os.Stat(bad); serr == nil {
			t.Errorf("a failed CreateKeyFile left %s behind", bad)
		}
	}
}
