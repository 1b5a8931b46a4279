package main

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/store"
	"github.com/tokenagent/tokenagent/store/disktest"
)

// TestDaemonStartsOnEveryDamagedStore: issue 23 item 2 at the daemon. A
// real store written by tokenagentd (20 profiles, tokens of varying size,
// three runs), truncated at every 4 KiB boundary and at odd offsets, with
// one byte flipped at 50 random offsets, or with a bucket's root page
// number pointing past the end: a real tokenagentd process starts on
// each, with the real key, and serves every profile's token over its
// socket. Either the store was damaged — one log line says it was moved
// aside, the moved file is the damaged one and no stored token is
// served — or the tokens it loaded are the ones served, without asking
// the IdP. The daemon then stops cleanly on SIGTERM. A fault (the SIGBUS
// of the issue) shows as the child's death before "agent started".
func TestDaemonStartsOnEveryDamagedStore(t *testing.T) {
	t.Parallel() // its own daemon processes, directories and sockets
	idp := idptest.New()
	defer idp.Close()
	const n = 20
	var profiles string
	for i := range n {
		p := fmt.Sprintf("p%02d", i)
		idp.AddClient(idptest.Client{ID: p, Secret: "daemon-secret", Method: "client_secret_basic"})
		profiles += profileTOML(p, idp.TokenURL, p)
	}
	keyText, err := store.NewKeyText()
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "store.key")
	writeConfig(t, keyPath, string(keyText))
	configIn := func(dir string) string {
		cfg := filepath.Join(dir, "agent.toml")
		writeConfig(t, cfg, fmt.Sprintf("store = %q\nstore_key = %q\n", filepath.Join(dir, "tokens.db"), "file:"+keyPath)+profiles)
		return cfg
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The seed: three runs, each fetching every profile's token (sizes
	// of real JWTs, 100 to 2,100 bytes of claims) or, when stored, forcing
	// a new one, so that the file holds a history of writes.
	seedDir := t.TempDir()
	seedConfig := configIn(seedDir)
	rng := mrand.New(mrand.NewPCG(23, 2))
	stored := map[string]string{} // profile → the token the store holds last
	for run := range 3 {
		d := startDaemon(t, seedConfig)
		c := &clientlib.Client{Socket: d.socket}
		for i := range n {
			p := fmt.Sprintf("p%02d", i)
			idp.SetFault(idptest.Fault{TokenPadding: 100 + rng.IntN(2000)})
			tok, err := c.Token(ctx, p)
			if err == nil && run > 0 {
				tok, err = c.ReportRejected(ctx, p, tok.AccessToken)
			}
			if err != nil {
				t.Fatalf("seed run %d, profile %s: %v", run, p, err)
			}
			stored[p] = tok.AccessToken
		}
		c.Close()
		d.stop(t)
	}
	idp.ClearFault()
	seed, err := os.ReadFile(filepath.Join(seedDir, "tokens.db"))
	if err != nil {
		t.Fatal(err)
	}
	past := disktest.PastTheEnd(seed)
	if len(past) == 0 {
		t.Fatal("the seed store has no bucket with a root page to point past the end")
	}
	cases := disktest.Damages(seed, 4096, 50)
	if testing.Short() { // every 8th
		var sample []disktest.Damage
		for i := 0; i < len(cases); i += 8 {
			sample = append(sample, cases[i])
		}
		cases = sample
	}
	cases = append(cases, past...)

	loadedRe := regexp.MustCompile(`"loaded":(\d+)`)
	var aside, whole, partial atomic.Int32
	t.Run("sweep", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "tokens.db"), c.Data, 0o600); err != nil {
					t.Fatal(err)
				}
				d := startDaemon(t, configIn(dir)) // fails if the child dies first
				opened := d.waitLog(`"message":"token store opened"`)
				m := loadedRe.FindStringSubmatch(opened)
				if m == nil {
					t.Fatalf("no loaded count in %s", opened)
				}
				loaded, _ := strconv.Atoi(m[1])
				client := &clientlib.Client{Socket: d.socket}
				defer client.Close()
				kept := 0
				for i := range n {
					p := fmt.Sprintf("p%02d", i)
					tok, err := client.Token(ctx, p)
					if err != nil {
						t.Fatalf("Token(%q) from a daemon started on a damaged store: %v", p, err)
					}
					if tok.AccessToken == stored[p] {
						kept++
					}
				}
				switch moved := d.logCount("token store was damaged; moved it aside"); moved {
				case 0:
					if kept != loaded {
						t.Errorf("%d stored tokens served, the log says %d loaded:\n%s", kept, loaded, opened)
					}
					if kept == n {
						whole.Add(1)
					} else {
						partial.Add(1)
					}
				case 1:
					aside.Add(1)
					line := d.waitLog("token store was damaged")
					to := regexp.MustCompile(`"moved_to":"([^"]+)"`).FindStringSubmatch(line)
					if to == nil {
						t.Fatalf("the moved-aside line does not say where: %s", line)
					}
					if got, err := os.ReadFile(to[1]); err != nil || !bytes.Equal(got, c.Data) {
						t.Errorf("moved-aside file %s: %v; want the damaged bytes (%d bytes, same: %v)", to[1], err, len(c.Data), bytes.Equal(got, c.Data))
					}
					if kept != 0 || loaded != 0 {
						t.Errorf("started empty but served %d stored tokens (log: %d loaded)", kept, loaded)
					}
				default:
					t.Errorf("%d moved-aside log lines, want one", moved)
				}
				d.stop(t)
			})
		}
	})
	t.Logf("%d damaged stores (seed %d bytes), a daemon started on each and served %d tokens: %d moved aside, %d kept every token, %d kept some",
		len(cases), len(seed), n, aside.Load(), whole.Load(), partial.Load())
}

// stop sends SIGTERM and fails t unless the daemon exits cleanly.
func (d *agentProc) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done // its log read to the end
	if err := d.cmd.Wait(); err != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		t.Errorf("daemon on SIGTERM: %v; want a clean exit; log tail:\n%s", err, tail(d.lines, 20))
	}
}

func tail(lines []string, n int) string {
	var b bytes.Buffer
	for _, l := range lines[max(0, len(lines)-n):] {
		b.WriteString(l + "\n")
	}
	return b.String()
}
