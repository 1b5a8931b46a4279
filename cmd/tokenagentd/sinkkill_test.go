package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

// jwtExp is the exp claim of a JWT ("" and false when it is not one).
func jwtExp(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}

// TestSinkFreshAcrossKill9: a real tokenagentd with a file sink (20 s
// tokens) and no caller at any time runs 90 s, is killed with SIGKILL and
// started again, and runs 90 s more: a reader decoding the file's JWT exp
// 10 times a second never sees an expired token, and the file exists
// within 2 s of each start (issue 23, must-show 1).
func TestSinkFreshAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 3 minutes")
	}
	t.Parallel() // its own daemon process, directory and socket
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "daemon-secret", Method: "client_secret_basic"})
	idp.SetTTL(20 * time.Second)
	dir := t.TempDir()
	sinkDir := filepath.Join(dir, "tokens")
	path := filepath.Join(sinkDir, "p")
	config := filepath.Join(dir, "agent.toml")
	writeConfig(t, config, fmt.Sprintf("store = %q\n", filepath.Join(dir, "tokens.db"))+
		profileTOML("p", idp.TokenURL, "c")+fmt.Sprintf("min_valid = \"5s\"\n\n[[profiles.p.files]]\npath = %q\n", path))

	const phase = 90 * time.Second
	var (
		mu      sync.Mutex
		reads   int
		tokens  = map[string]bool{}
		problem string
	)
	check := func(since time.Time) (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				now := time.Now()
				data, err := os.ReadFile(path)
				mu.Lock()
				reads++
				switch tok, ok := strings.CutSuffix(string(data), "\n"); {
				case err != nil && os.IsNotExist(err) && now.Sub(since) < 2*time.Second:
				case err != nil:
					problem = firstOf(problem, fmt.Sprintf("%v after start: %v", now.Sub(since).Round(time.Millisecond), err))
				case !ok:
					problem = firstOf(problem, fmt.Sprintf("a partial file (%d bytes)", len(data)))
				default:
					exp, isJWT := jwtExp(tok)
					tokens[tok] = true
					if !isJWT || !now.Before(exp) {
						problem = firstOf(problem, fmt.Sprintf("%v after start the file held a token that expired at %v (now %v)", now.Sub(since).Round(time.Millisecond), exp, now))
					}
				}
				mu.Unlock()
			}
		})
		return func() { close(done); wg.Wait() }
	}

	start := time.Now()
	d := startDaemon(t, config)
	stopReader := check(start)
	time.Sleep(phase)
	d.cmd.Process.Kill()
	d.cmd.Wait()
	stopReader()

	start = time.Now()
	startDaemon(t, config)
	stopReader = check(start)
	time.Sleep(phase)
	stopReader()

	mu.Lock()
	defer mu.Unlock()
	if problem != "" {
		t.Error(problem)
	}
	// 180 s of 20 s tokens refreshed at about 15 s: a dozen or so.
	if len(tokens) < 8 || reads < 1000 {
		t.Errorf("the reader saw %d tokens in %d reads; want the file refreshed all along", len(tokens), reads)
	}
}

// firstOf keeps the first problem seen.
func firstOf(first, next string) string {
	if first != "" {
		return first
	}
	return next
}
