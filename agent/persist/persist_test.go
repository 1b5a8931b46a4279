package persist_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/clocktest"
	"github.com/tokenagent/tokenagent/agent/persist"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

var start = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// env is a real store file in a temporary directory and a writer over it
// on a simulated clock.
type env struct {
	t       *testing.T
	path    string
	clock   *clocktest.Clock
	open    func() (*store.Store, error)
	changed chan struct{}
}

func newEnv(t *testing.T) *env {
	text, err := store.NewKeyText()
	if err != nil {
		t.Fatal(err)
	}
	key, err := store.ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, path: filepath.Join(t.TempDir(), "tokens.db"), clock: clocktest.New(start), changed: make(chan struct{}, 1)}
	e.open = func() (*store.Store, error) { return store.Open(e.path, store.Options{Key: key}) }
	return e
}

func (e *env) writer(st *store.Store, openErr error, adopt func(*store.Store) []store.Record) *persist.Writer {
	w := persist.New(persist.Options{Path: e.path, Store: st, OpenErr: openErr, Reopen: e.open, Adopt: adopt, Clock: e.clock,
		Changed: func() {
			select {
			case e.changed <- struct{}{}:
			default:
			}
		}})
	go w.Run()
	e.t.Cleanup(w.Close)
	return w
}

// wait waits on the writer's state changes until ok says so of its health.
func (e *env) wait(w *persist.Writer, what string, ok func(ipc.StoreHealth) bool) {
	e.t.Helper()
	deadline := time.After(time.Minute)
	for {
		h := w.Health()
		if ok(h) {
			return
		}
		select {
		case <-e.changed:
		case <-deadline:
			e.t.Fatalf("store never became %s; last state %+v", what, h)
		}
	}
}

// advanceCheck moves the simulated clock to the writer's next check: the
// writer checks then, whether its timer was armed before or after.
func (e *env) advanceCheck() { e.clock.Advance(persist.CheckEvery) }

func written(h ipc.StoreHealth) bool { return h.State == persist.StateOK && h.PendingWrites == 0 }

func record(profile string) store.Record {
	return store.Record{Profile: profile, Fingerprint: "fp", AccessToken: "token-" + profile, TokenType: "Bearer",
		ExpiresAt: start.Add(time.Hour), ObtainedAt: start}
}

func stored(t *testing.T, e *env) []store.Record {
	t.Helper()
	st, err := e.open()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, _, err := st.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestPutRemoveAndCloseFlush: what Put and Remove note is written by the
// writer, and Close writes what is still pending before closing the file.
func TestPutRemoveAndCloseFlush(t *testing.T) {
	e := newEnv(t)
	st, err := e.open()
	if err != nil {
		t.Fatal(err)
	}
	w := e.writer(st, nil, nil)
	w.Put(record("p"))
	w.Put(record("q"))
	e.wait(w, "written", written)
	w.Remove("q")
	w.Put(record("r"))
	w.Close()
	recs := stored(t, e)
	if len(recs) != 2 || recs[0].Profile != "p" || recs[1].Profile != "r" {
		t.Errorf("stored after Close = %+v, want p and r", recs)
	}
}

// TestUnavailableStoreOpensAtCheck: a store that could not be opened is
// tried again at the next check on the writer's clock; once open, the
// engine adopts it and the tokens it holds are written.
func TestUnavailableStoreOpensAtCheck(t *testing.T) {
	e := newEnv(t)
	if err := os.Mkdir(e.path, 0o700); err != nil { // a directory where the file belongs
		t.Fatal(err)
	}
	st, openErr := e.open()
	if openErr == nil {
		st.Close()
		t.Fatal("store.Open over a directory succeeded")
	}
	adopted := 0
	w := e.writer(nil, openErr, func(*store.Store) []store.Record { adopted++; return []store.Record{record("p")} })
	if h := w.Health(); h.State != persist.StateUnavailable || h.Error == "" || h.Path != e.path {
		t.Errorf("Health() = %+v; want unavailable, with the path and the error", h)
	}
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	e.advanceCheck()
	e.wait(w, "open and written", written)
	w.Close()
	if recs := stored(t, e); adopted != 1 || len(recs) != 1 || recs[0].Profile != "p" {
		t.Errorf("adopted %d times, stored %+v; want once, and p", adopted, recs)
	}
}

// TestDeletedFileIsNoticedAtCheck: a store file deleted under the writer
// is noticed at the next check and recreated with the engine's tokens.
func TestDeletedFileIsNoticedAtCheck(t *testing.T) {
	e := newEnv(t)
	st, err := e.open()
	if err != nil {
		t.Fatal(err)
	}
	w := e.writer(st, nil, func(*store.Store) []store.Record { return []store.Record{record("p")} })
	w.Put(record("p"))
	e.wait(w, "written", written)
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	e.advanceCheck()
	e.wait(w, "recreated", func(h ipc.StoreHealth) bool {
		_, err := os.Stat(e.path)
		return err == nil && written(h)
	})
	w.Close()
	if recs := stored(t, e); len(recs) != 1 || recs[0].Profile != "p" {
		t.Errorf("recreated store holds %+v, want p", recs)
	}
}
