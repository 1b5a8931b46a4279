package secretref_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
)

func TestRotatingFileFollowsSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	rotate := func(content string) {
		if err := idptest.Project(dir, "token", []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	rotate("first-token")
	f, err := secretref.NewRotatingFile("file:"+filepath.Join(dir, "token"), "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.Read(false); err != nil || string(got) != "first-token" {
		t.Fatalf("Read() = %q, %v; want first-token", got, err)
	}
	rotate("second-token")
	if got, err := f.Read(false); err != nil || string(got) != "second-token" {
		t.Fatalf("Read() after the ..data swap = %q, %v; want second-token", got, err)
	}
}

// TestRotatingFileStatDecides: the content is read again only when the
// stat differs (or when asked to): a rewrite in place that keeps size and
// mtime is not seen until a fresh read.
func TestRotatingFileStatDecides(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "token"), []byte("token-AAAA"), 0o600)
	f, err := secretref.NewRotatingFile("file:token", dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Read(false); string(got) != "token-AAAA" {
		t.Fatalf("Read() = %q, want token-AAAA", got)
	}
	fi, _ := os.Stat(path)
	if err := os.WriteFile(path, []byte("token-BBBB"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	if got, _ := f.Read(false); string(got) != "token-AAAA" {
		t.Errorf("Read(false) with the stat unchanged = %q, want the held token-AAAA", got)
	}
	if got, _ := f.Read(true); string(got) != "token-BBBB" {
		t.Errorf("Read(true) = %q, want token-BBBB", got)
	}
	os.WriteFile(path, []byte("token-CCCCC"), 0o600) // one byte longer: the stat differs
	if got, _ := f.Read(false); string(got) != "token-CCCCC" {
		t.Errorf("Read(false) after a change = %q, want token-CCCCC", got)
	}
}

func TestRotatingFileErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "open"), []byte("readable-by-all-token"), 0o644)
	for _, tc := range []struct {
		name, ref string
		want      []string
	}{
		{"missing", "file:" + filepath.Join(dir, "none"), []string{filepath.Join(dir, "none"), "no such file"}},
		{"readable by every user", "file:open", []string{filepath.Join(dir, "open"), "0644", "chmod o-r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := secretref.NewRotatingFile(tc.ref, dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Read(false)
			if err == nil || strings.Contains(err.Error(), "readable-by-all-token") {
				t.Fatalf("Read() = %v, want an error without the content", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Read() error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := secretref.NewRotatingFile("env:TOKEN", dir); err == nil {
		t.Error("NewRotatingFile(env:TOKEN) = nil error, want file: only")
	}
}
