package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/store"
)

// storeEnv is a config directory with a key, a store path and an IdP.
type storeEnv struct {
	*harness
	dir     string
	dbPath  string
	keyPath string
}

func newStoreEnv(t *testing.T) *storeEnv {
	t.Helper()
	h := newHarness(t, "")
	h.srv.AddClient(idptest.Client{ID: "c2", Secret: testSecret, Method: "client_secret_basic"})
	dir := t.TempDir()
	return &storeEnv{harness: h, dir: dir, dbPath: filepath.Join(dir, "state", "tokens.db"), keyPath: filepath.Join(dir, "store.key")}
}

// profiles is a config with profiles p, q and r on the harness IdP; edit
// rewrites parts of it.
func (e *storeEnv) config(extra string, edit ...string) string {
	cfg := fmt.Sprintf(`store = %q
%s
[profiles.p]
token_url = %q
client_id = "c"
client_secret = %q
scopes = ["read"]
audience = "api"

[profiles.q]
token_url = %q
client_id = "c"
client_secret = %q

[profiles.r]
token_url = %q
client_id = "c"
client_secret = %q
`, e.dbPath, extra, e.srv.TokenURL, testSecret, e.srv.TokenURL, testSecret, e.srv.TokenURL, testSecret)
	for i := 0; i+1 < len(edit); i += 2 {
		cfg = strings.Replace(cfg, edit[i], edit[i+1], 1)
	}
	return cfg
}

// start opens an agent, and its store, from a config written in e.dir.
func (e *storeEnv) start(toml string) (*agent.Agent, error) {
	e.t.Helper()
	path := writeFile(e.t, filepath.Join(e.dir, "agent.toml"), []byte(toml), 0o600)
	cfg, err := secretref.LoadConfig(path)
	if err != nil {
		e.t.Fatalf("LoadConfig: %v", err)
	}
	logger := newTestLogger(e.t)
	a, err := agent.Open(cfg, agent.Options{Clock: e.clock, Logger: &logger})
	suiteLog.err(e.t, err)
	return a, err
}

func (e *storeEnv) mustStart(toml string) (*agent.Agent, func()) {
	e.t.Helper()
	a, err := e.start(toml)
	if err != nil {
		e.t.Fatalf("start: %v", err)
	}
	stop := func() { a.Close() }
	e.t.Cleanup(stop)
	return a, stop
}

func tokenOf(t *testing.T, a *agent.Agent, profile string) string {
	t.Helper()
	tok, err := a.Token(context.Background(), self, profile, 0)
	suiteLog.err(t, err)
	if err != nil {
		t.Fatalf("Token(%q): %v", profile, err)
	}
	return tok.AccessToken
}

func TestRestartServesStoredTokens(t *testing.T) {
	e := newStoreEnv(t)
	a, stop := e.mustStart(e.config(""))
	before := map[string]string{}
	for _, p := range []string{"p", "q", "r"} {
		before[p] = tokenOf(t, a, p)
	}
	stop()
	if got := e.requests(); got != 3 {
		t.Fatalf("IdP requests before restart = %d, want 3", got)
	}
	e.clock.Advance(10 * time.Minute) // tokens live an hour

	a, _ = e.mustStart(e.config(""))
	for p, tok := range before {
		if got := tokenOf(t, a, p); got != tok {
			t.Errorf("after restart, profile %s served a different token", p)
		}
	}
	if got := e.requests(); got != 3 {
		t.Errorf("IdP requests after restart = %d, want 3 (0 new)", got)
	}

	// The raw file holds neither token, secret nor key.
	raw, err := os.ReadFile(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	keyText, _ := os.ReadFile(e.keyPath)
	for name, secret := range map[string]string{"access token": before["p"], "client secret": testSecret, "store key": strings.TrimSpace(string(keyText))} {
		if secret == "" || bytes.Contains(raw, []byte(secret)) || leaked(string(raw), secret) {
			t.Errorf("database file contains the %s in plaintext (or it is empty)", name)
		}
	}
}

func TestChangedSettingsIgnoreStoredToken(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
	}{
		{"client id", `client_id = "c"` + "\nclient_secret = \"" + testSecret + "\"\nscopes", `client_id = "c2"` + "\nclient_secret = \"" + testSecret + "\"\nscopes"},
		{"scopes", `scopes = ["read"]`, `scopes = ["read", "write"]`},
		{"audience", `audience = "api"`, `audience = "other-api"`},
		{"token url", "/token\"\nclient_id = \"c\"\nclient_secret = \"" + testSecret + "\"\nscopes", "/token?tenant=2\"\nclient_id = \"c\"\nclient_secret = \"" + testSecret + "\"\nscopes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newStoreEnv(t)
			a, stop := e.mustStart(e.config(""))
			old := tokenOf(t, a, "p")
			stop()
			changed := e.config("", tt.from, tt.to)
			if changed == e.config("") {
				t.Fatal("edit did not apply")
			}
			before := e.srv.TotalRequests()
			a, _ = e.mustStart(changed)
			if tokenOf(t, a, "p") == old {
				t.Error("served the stored token after its profile's settings changed")
			}
			if got := e.srv.TotalRequests() - before; got != 1 {
				t.Errorf("IdP requests after the change = %d, want 1", got)
			}
		})
	}
}

func TestRecordCopiedToAnotherProfileIsDropped(t *testing.T) {
	e := newStoreEnv(t)
	a, stop := e.mustStart(e.config(""))
	pTok := tokenOf(t, a, "p")
	tokenOf(t, a, "q")
	stop()
	db, err := bolt.Open(e.dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("tokens"))
		return b.Put([]byte("q"), bytes.Clone(b.Get([]byte("p"))))
	})
	db.Close()

	before := e.requests()
	a, _ = e.mustStart(e.config(""))
	if tokenOf(t, a, "q") == pTok {
		t.Fatal("profile q was served profile p's token")
	}
	if tokenOf(t, a, "p") != pTok {
		t.Error("profile p lost its stored token")
	}
	if got := e.requests() - before; got != 1 {
		t.Errorf("IdP requests after the copy = %d, want 1 (q only)", got)
	}
}

func TestWrongStoreKey(t *testing.T) {
	e := newStoreEnv(t)
	oldKey, _ := store.NewKeyText()
	writeFile(t, filepath.Join(e.dir, "old.key"), oldKey, 0o600)
	a, stop := e.mustStart(e.config(`store_key = "file:old.key"`))
	tok := tokenOf(t, a, "p")
	stop()

	_, err := e.start(e.config(""))
	for _, want := range []string{e.dbPath, "file:" + e.keyPath, "store_key_previous", "delete"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("start with another key = %v, want an error mentioning %q", err, want)
		}
	}

	a, stop = e.mustStart(e.config(`store_key_previous = ["file:old.key"]`))
	if tokenOf(t, a, "p") != tok {
		t.Error("with the previous key listed, the stored token was not served")
	}
	stop()
	a, _ = e.mustStart(e.config(""))
	if tokenOf(t, a, "p") != tok {
		t.Error("after re-sealing, the current key alone did not open the record")
	}
}

func TestSecondAgentOnSameStore(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	e.mustStart(e.config(""))
	start := time.Now()
	_, err := e.start(e.config(""))
	elapsed := time.Since(start)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), e.dbPath) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second agent = %v, want ErrLocked naming %s", err, e.dbPath)
	}
	t.Logf("second agent refused after %v", elapsed.Round(time.Millisecond))
}

func TestCorruptStoreStartsFresh(t *testing.T) {
	e := newStoreEnv(t)
	os.MkdirAll(filepath.Dir(e.dbPath), 0o700)
	os.WriteFile(e.dbPath, bytes.Repeat([]byte("garbage!"), 2048), 0o600)
	a, _ := e.mustStart(e.config(""))
	tokenOf(t, a, "p")
	matches, _ := filepath.Glob(e.dbPath + ".corrupt-*")
	if len(matches) != 1 {
		t.Errorf("moved-aside files = %v, want one", matches)
	}
	if logs := suiteLog.textFor(t); !strings.Contains(logs, "token store was damaged") || !strings.Contains(logs, `"level":"error"`) {
		t.Error("no error logged for the damaged store")
	}
}

func TestStoreKeySources(t *testing.T) {
	t.Run("named key file missing", func(t *testing.T) {
		e := newStoreEnv(t)
		_, err := e.start(e.config(`store_key = "file:missing.key"`))
		if err == nil || !strings.Contains(err.Error(), "missing.key") || !strings.Contains(err.Error(), "openssl rand -base64 32") {
			t.Errorf("start with a missing store_key file = %v, want an error saying how to create it", err)
		}
	})
	t.Run("default key file created 0600", func(t *testing.T) {
		e := newStoreEnv(t)
		e.mustStart(e.config(""))
		fi, err := os.Stat(e.keyPath)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("store.key = %v, %v; want a 0600 file beside the config", fi, err)
		}
		text, _ := os.ReadFile(e.keyPath)
		if _, err := store.ParseKey(text); err != nil {
			t.Errorf("created key does not parse: %v", err)
		}
	})
	t.Run("key file readable by others refused", func(t *testing.T) {
		e := newStoreEnv(t)
		text, _ := store.NewKeyText()
		writeFile(t, e.keyPath, text, 0o644)
		_, err := e.start(e.config(""))
		if err == nil || !strings.Contains(err.Error(), e.keyPath) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("start with a 0644 key file = %v, want refusal naming it", err)
		}
	})
	t.Run("systemd credential used when present", func(t *testing.T) {
		e := newStoreEnv(t)
		credDir := t.TempDir()
		text, _ := store.NewKeyText()
		writeFile(t, filepath.Join(credDir, "store-key"), text, 0o400)
		t.Setenv("CREDENTIALS_DIRECTORY", credDir)
		a, stop := e.mustStart(e.config(""))
		tokenOf(t, a, "p")
		stop()
		if _, err := os.Stat(e.keyPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("store.key was created although $CREDENTIALS_DIRECTORY/store-key exists")
		}
		// The record is sealed with the credential's key.
		key, _ := store.ParseKey(text)
		st, err := store.Open(e.dbPath, store.Options{Key: key})
		if err != nil {
			t.Fatalf("open the store with the credential key: %v", err)
		}
		defer st.Close()
		if recs, _, _ := st.LoadAll(); len(recs) != 1 {
			t.Errorf("records sealed with the credential key = %d, want 1", len(recs))
		}
	})
	t.Run("env key", func(t *testing.T) {
		e := newStoreEnv(t)
		text, _ := store.NewKeyText()
		t.Setenv("TEST_STORE_KEY", string(text))
		suiteLog.secret(strings.TrimSpace(string(text)))
		e.mustStart(e.config(`store_key = "env:TEST_STORE_KEY"`))
	})
	t.Run("literal key refused", func(t *testing.T) {
		e := newStoreEnv(t)
		path := writeFile(t, filepath.Join(e.dir, "agent.toml"), []byte(e.config(`store_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="`)), 0o600)
		_, err := secretref.LoadConfig(path)
		if err == nil || strings.Contains(err.Error(), "MDEyMzQ1") || !strings.Contains(err.Error(), "store_key") {
			t.Errorf("LoadConfig(literal store_key) = %v, want refusal that does not echo the key", err)
		}
	})
	t.Run("memory", func(t *testing.T) {
		e := newStoreEnv(t)
		cfg, _ := config.ParseConfig([]byte(`store = "memory"`), filepath.Join(e.dir, "agent.toml"))
		if st, err := agent.OpenStore(cfg); st != nil || err != nil {
			t.Errorf("OpenStore(memory) = %v, %v; want nil, nil", st, err)
		}
	})
}

func TestCheckStore(t *testing.T) {
	e := newStoreEnv(t)
	load := func(extra string) *config.Config {
		t.Helper()
		cfg, err := secretref.LoadConfig(writeFile(t, filepath.Join(e.dir, "agent.toml"), []byte(e.config(extra)), 0o600))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	where, err := agent.CheckStore(load(""))
	if err != nil || !strings.Contains(where, "created on first start") {
		t.Errorf("CheckStore() with no key yet = %q, %v", where, err)
	}
	if _, err := os.Stat(e.keyPath); !errors.Is(err, os.ErrNotExist) {
		t.Error("CheckStore created the key file")
	}
	text, _ := store.NewKeyText()
	writeFile(t, e.keyPath, text, 0o644)
	if _, err := agent.CheckStore(load("")); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("CheckStore() with a 0644 key = %v, want refusal", err)
	}
	os.Chmod(e.keyPath, 0o600)
	key, _ := store.ParseKey(text)
	if where, err := agent.CheckStore(load("")); err != nil || !strings.Contains(where, key.ID()) || !strings.Contains(where, e.dbPath) {
		t.Errorf("CheckStore() = %q, %v; want the path and key id %s", where, err, key.ID())
	}
	if _, err := agent.CheckStore(load(`store_key_previous = ["file:missing.key"]`)); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Errorf("CheckStore() with a missing previous key = %v", err)
	}
}
