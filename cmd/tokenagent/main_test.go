package main

import (
	"bufio"
	"bytes"
	"context"
	"github.com/tokenagent/tokenagent/ipc"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunDevServesDemoToken(t *testing.T) {
	t.Setenv(ipc.EnvSocket, "") // --dev picks a socket of its own
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"run", "--dev"}, io.Discard, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if strings.Contains(line, "demo token ready") {
			if !strings.Contains(line, `"token_sha256":"`) {
				t.Errorf("ready line lacks the token fingerprint: %s", line)
			}
			cancel()
			go io.Copy(io.Discard, pr)
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("run --dev: %v\n%s", err, strings.Join(lines, "\n"))
	}
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, `"message":"token fetched"`) {
		t.Errorf("log lacks the fetch event:\n%s", joined)
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:TEST_CC_SECRET\"\n"), 0o600)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclientid = \"c\"\n"), 0o600)
	t.Setenv("TEST_CC_SECRET", "x")
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrWant string
	}{
		{"no command", nil, exitUsage, "", "no command"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"bad flag", []string{"run", "--nope"}, exitUsage, "", "-nope"},
		{"version", []string{"version"}, exitOK, "tokenagent ", ""},
		{"check-config ok", []string{"check-config", good}, exitOK, "ok, 1 profile(s): p", ""},
		{"check-config unknown key", []string{"check-config", bad}, exitFailure, "", "bad.toml:3: unknown key \"clientid\""},
		{"check-config missing file", []string{"check-config", filepath.Join(dir, "nope.toml")}, exitFailure, "", "nope.toml"},
		{"check-config two files", []string{"check-config", good, bad}, exitUsage, "", "at most one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			if code := exitCode(err, &stderr); code != tt.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderrWant) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.stderrWant)
			}
		})
	}
}
