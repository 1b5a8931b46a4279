package store_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tokenagent/tokenagent/store"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("TOKENAGENT_STORE_WRITER"); path != "" {
		crashWriter(path)
		return
	}
	os.Exit(m.Run())
}

func newKey(t testing.TB) (*store.Key, []byte) {
	t.Helper()
	text, err := store.NewKeyText()
	if err != nil {
		t.Fatal(err)
	}
	k, err := store.ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	return k, text
}

func record(profile string, i int) store.Record {
	now := time.Unix(1_800_000_000, 0)
	return store.Record{
		Profile: profile, Fingerprint: "fp-" + profile,
		AccessToken: fmt.Sprintf("eyJ-access-token-%s-%06d", profile, i),
		TokenType:   "Bearer", Scope: "read",
		ExpiresAt: now.Add(time.Hour), ObtainedAt: now,
	}
}

func open(t testing.TB, path string, opts store.Options) *store.Store {
	t.Helper()
	s, err := store.Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRoundTripAndModes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state", "tokenagent")
	path := filepath.Join(dir, "tokens.db")
	key, keyText := newKey(t)
	s := open(t, path, store.Options{Key: key})
	want := record("zeebe", 1)
	if err := s.Put(want); err != nil {
		t.Fatal(err)
	}
	recs, problems, err := s.LoadAll()
	if err != nil || len(problems) > 0 || len(recs) != 1 {
		t.Fatalf("LoadAll() = %v, %v, %v; want 1 record", recs, problems, err)
	}
	got := recs[0]
	if got.AccessToken != want.AccessToken || got.Fingerprint != want.Fingerprint || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.ObtainedAt.Equal(want.ObtainedAt) || got.Scope != "read" {
		t.Errorf("LoadAll()[0] = %+v, want %+v", got, want)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("mode of %s = %v, want %04o", p, fi.Mode().Perm(), mode)
		}
	}
	s.Close()
	raw, _ := os.ReadFile(path)
	for _, secret := range []string{want.AccessToken, "access-token", strings.TrimSpace(string(keyText))} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("database file contains %q in plaintext", secret)
		}
	}
}

func TestRecordBoundToProfileName(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.db")
	key, _ := newKey(t)
	s := open(t, path, store.Options{Key: key})
	s.Put(record("a", 1))
	s.Close()
	// Copy a's sealed bytes under b's name, as an attacker with write
	// access to the file could.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("tokens"))
		return b.Put([]byte("b"), bytes.Clone(b.Get([]byte("a"))))
	})
	db.Close()

	s = open(t, path, store.Options{Key: key})
	recs, problems, _ := s.LoadAll()
	if len(recs) != 1 || recs[0].Profile != "a" {
		t.Errorf("LoadAll() records = %v, want only a's", recs)
	}
	if len(problems) != 1 || problems[0].Profile != "b" || !errors.Is(problems[0].Err, store.ErrCorruptRecord) {
		t.Errorf("LoadAll() problems = %v, want b failing authentication", problems)
	}
}

func TestDamagedRecords(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.db")
	key, _ := newKey(t)
	s := open(t, path, store.Options{Key: key})
	s.Put(record("good", 1))
	s.Put(record("flipped", 1))
	s.Close()
	db, _ := bolt.Open(path, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("tokens"))
		v := bytes.Clone(b.Get([]byte("flipped")))
		v[len(v)-1] ^= 0x01 // flip a tag bit
		b.Put([]byte("flipped"), v)
		hdr := bytes.Clone(b.Get([]byte("good"))[:20])
		b.Put([]byte("short"), hdr) // header, but shorter than nonce + tag
		b.Put([]byte("tiny"), []byte{1, 2})
		return nil
	})
	db.Close()
	s = open(t, path, store.Options{Key: key})
	recs, problems, err := s.LoadAll()
	if err != nil || len(recs) != 1 || recs[0].Profile != "good" {
		t.Fatalf("LoadAll() = %v, %v; want only the good record", recs, err)
	}
	if len(problems) != 3 {
		t.Errorf("LoadAll() problems = %v, want flipped, short and tiny", problems)
	}
	for _, p := range problems {
		if !errors.Is(p.Err, store.ErrCorruptRecord) {
			t.Errorf("problem %s = %v, want ErrCorruptRecord", p.Profile, p.Err)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.db")
	oldKey, _ := newKey(t)
	newK, _ := newKey(t)
	s := open(t, path, store.Options{Key: oldKey})
	s.Put(record("a", 1))
	s.Put(record("b", 1))
	s.Close()

	_, err := store.Open(path, store.Options{Key: newK})
	var wk *store.WrongKeyError
	if !errors.As(err, &wk) || wk.Records != 2 || wk.KeyIDs[0] != oldKey.ID() || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open(new key only) = %v, want WrongKeyError naming the file, 2 records and key id %s", err, oldKey.ID())
	}

	s = open(t, path, store.Options{Key: newK, PreviousKeys: []*store.Key{oldKey}})
	if s.Resealed() != 2 {
		t.Errorf("Resealed() = %d, want 2", s.Resealed())
	}
	s.Close()
	// Re-sealed: the old key is no longer needed.
	s = open(t, path, store.Options{Key: newK})
	if recs, problems, _ := s.LoadAll(); len(recs) != 2 || len(problems) != 0 {
		t.Errorf("after re-seal, LoadAll() = %v, %v; want 2 records", recs, problems)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.db")
	key, _ := newKey(t)
	open(t, path, store.Options{Key: key})
	// bbolt's flock is per open file description, so a second Open in this
	// process contends like a second process would.
	start := time.Now()
	_, err := store.Open(path, store.Options{Key: key})
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Open = %v, want ErrLocked naming the file", err)
	}
	t.Logf("second Open refused after %v", time.Since(start).Round(time.Millisecond))
}

func TestDamagedFilesMovedAside(t *testing.T) {
	t.Parallel()
	key, _ := newKey(t)
	valid := func(t *testing.T) []byte {
		path := filepath.Join(t.TempDir(), "seed.db")
		s := open(t, path, store.Options{Key: key})
		for i := range 300 {
			s.Put(record(fmt.Sprintf("p%03d", i), i))
		}
		s.Close()
		data, _ := os.ReadFile(path)
		return data
	}
	random := make([]byte, 64<<10)
	rand.Read(random)
	seed := valid(t)
	tests := []struct {
		name string
		data []byte
	}{
		{"zero-length", nil},
		{"random bytes", random},
		{"truncated to half", seed[:len(seed)/2]},
		{"truncated to one page", seed[:4096]},
		{"truncated to three pages", seed[:3*4096]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "tokens.db")
			os.WriteFile(path, tt.data, 0o600)
			when := time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)
			s := open(t, path, store.Options{Key: key, Now: func() time.Time { return when }})
			movedTo, cause := s.Recovered()
			wantAside := path + ".corrupt-20261124T030405Z"
			if movedTo != wantAside || cause == nil {
				t.Fatalf("Recovered() = %q, %v; want %q and a cause", movedTo, cause, wantAside)
			}
			if kept, err := os.ReadFile(wantAside); err != nil || !bytes.Equal(kept, tt.data) {
				t.Errorf("moved-aside file differs from the damaged one (%v)", err)
			}
			if err := s.Put(record("fresh", 1)); err != nil {
				t.Errorf("Put on the fresh store: %v", err)
			}
		})
	}
}

func TestReadOnlyDirectory(t *testing.T) {
	mnt := tmpfs(t, "size=1m")
	remount(t, mnt, "ro")
	key, _ := newKey(t)
	_, err := store.Open(filepath.Join(mnt, "tokens.db"), store.Options{Key: key})
	if err == nil || !strings.Contains(err.Error(), mnt) || !strings.Contains(err.Error(), "not writable") || !strings.Contains(err.Error(), `store = "memory"`) {
		t.Errorf("Open in a read-only directory = %v, want a clear error naming it", err)
	}
}

// tmpfs mounts a fresh tmpfs for the test (root only): the way to make a
// directory truly read-only or full for a root process.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, mode, err, out)
	}
}

// crashWriter is the helper process for TestCrashConsistency: it writes
// records in a loop, announcing each completed write on stdout.
func crashWriter(path string) {
	key, err := store.ParseKey([]byte(os.Getenv("TOKENAGENT_STORE_KEY")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s, err := store.Open(path, store.Options{Key: key, LockTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		for p := range 8 {
			if err := s.Put(record(fmt.Sprintf("p%d", p), i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			w.WriteString("w\n")
			w.Flush()
		}
	}
}

func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("SIGKILL campaign skipped in -short mode")
	}
	path := filepath.Join(t.TempDir(), "tokens.db")
	key, keyText := newKey(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(7, 7))
	const kills = 60
	for round := range kills {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), "TOKENAGENT_STORE_WRITER="+path, "TOKENAGENT_STORE_KEY="+string(keyText))
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it complete a random number of writes, then kill it in the
		// middle of the next ones.
		sc := bufio.NewScanner(stdout)
		for range 1 + rng.IntN(40) {
			if !sc.Scan() {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if stderr.Len() > 0 {
			t.Fatalf("round %d: writer failed: %s", round, stderr.String())
		}

		s, err := store.Open(path, store.Options{Key: key})
		if err != nil {
			t.Fatalf("round %d: Open after SIGKILL: %v", round, err)
		}
		if moved, cause := s.Recovered(); moved != "" {
			t.Fatalf("round %d: store needed recovery after SIGKILL: %v", round, cause)
		}
		recs, problems, err := s.LoadAll()
		s.Close()
		if err != nil || len(problems) > 0 {
			t.Fatalf("round %d: LoadAll after SIGKILL: %v %v", round, err, problems)
		}
		for _, r := range recs {
			var n int
			if _, err := fmt.Sscanf(r.AccessToken, "eyJ-access-token-"+r.Profile+"-%06d", &n); err != nil {
				t.Fatalf("round %d: record %s decrypted to an unexpected value", round, r.Profile)
			}
		}
	}
	t.Logf("%d SIGKILLs, store opened cleanly after each", kills)
}

func BenchmarkLoadAll1000(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tokens.db")
	key, _ := newKey(b)
	s, err := store.Open(path, store.Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		s.Put(record(fmt.Sprintf("profile-%04d", i), i))
	}
	s.Close()
	b.ResetTimer()
	for b.Loop() {
		s, err := store.Open(path, store.Options{Key: key})
		if err != nil {
			b.Fatal(err)
		}
		recs, _, _ := s.LoadAll()
		if len(recs) != 1000 {
			b.Fatalf("loaded %d records", len(recs))
		}
		s.Close()
	}
}

func BenchmarkPut(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tokens.db")
	key, _ := newKey(b)
	s, err := store.Open(path, store.Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	i := 0
	for b.Loop() {
		i++
		if err := s.Put(record("zeebe", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStoreThroughALinkRefused: a symlink planted at the store path does
// not make the agent create or open a file elsewhere.
func TestStoreThroughALinkRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere.db")
	path := filepath.Join(dir, "tokens.db")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	key, _ := newKey(t)
	_, err := store.Open(path, store.Options{Key: key})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open through a symlink = %v, want a refusal naming the path", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was created: %v", err)
	}
}
