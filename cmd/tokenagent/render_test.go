package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/ipc"
)

// FuzzRender: whatever a (possibly fake) agent hands the CLI, no output
// format carries a control character or breaks out of its quoting, and
// the status table prints text only.
func FuzzRender(f *testing.F) {
	f.Add("eyJhbGciOi.eyJzdWIi.sig", "Bearer", "read write", "demo", "invalid_client: bad secret")
	f.Add("tok\"\nurl = \"file:///etc/passwd", "Bearer\r\nX-Injected: 1", "a\x1b[2J", "x\u202ey", "\u009b31m")
	f.Add("abc'def", "", "", "p", "")
	f.Add("abc==", "DPoP", "s", "p", "e\te")
	f.Fuzz(func(t *testing.T, token, tokenType, scope, name, lastError string) {
		tok := &clientlib.Token{AccessToken: token, TokenType: tokenType, Scope: scope, ExpiresAt: time.Unix(2e9, 0)}
		for _, format := range []string{"plain", "json", "header", "env", "curl"} {
			out, err := renderToken(format, "ACCESS_TOKEN", tok)
			if err != nil {
				if ipc.ValidToken(token) {
					t.Fatalf("renderToken(%s) refused a valid token: %v", format, err)
				}
				continue
			}
			body, ok := strings.CutSuffix(out, "\n")
			if !ok || (format != "json" && strings.Contains(body, "\n")) || hasControl(strings.ReplaceAll(body, "\n", "")) {
				t.Fatalf("renderToken(%s) = %q: a control character, or not one line ending in a newline", format, out)
			}
			switch format {
			case "plain":
				if body != token {
					t.Fatalf("plain = %q, want the token", body)
				}
			case "header":
				if body != "Authorization: Bearer "+token {
					t.Fatalf("header = %q", body)
				}
			case "env":
				quoted, _ := strings.CutPrefix(body, "export ACCESS_TOKEN=")
				if unquoted, ok := shellUnquote(quoted); !ok || unquoted != token {
					t.Fatalf("env = %q: does not quote the token as one shell word", body)
				}
			case "curl":
				inner, ok := strings.CutPrefix(body, `header = "Authorization: Bearer `)
				inner, ok2 := strings.CutSuffix(inner, `"`)
				if !ok || !ok2 || inner != token || strings.ContainsAny(inner, `"\`) {
					t.Fatalf("curl = %q: breaks out of the quoted header value", body)
				}
			case "json":
				var back ipc.TokenResponse
				if err := json.Unmarshal([]byte(out), &back); err != nil || back.AccessToken != token || back.TokenType != ipc.SafeText(tokenType) {
					t.Fatalf("json = %q does not read back: %v", out, err)
				}
			}
		}
		var b strings.Builder
		profiles := []clientlib.ProfileStatus{{Name: name, LastError: lastError}, {Name: "other"}}
		if err := renderStatus(&b, profiles, time.Unix(2e9, 0)); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 3 || hasControl(strings.Join(lines, "")) {
			t.Fatalf("status table %q: want 3 lines of text", b.String())
		}
	})
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return true
		}
	}
	return false
}

// shellUnquote reads one POSIX-sh word made of single-quoted parts and
// \' escapes, as shellQuote writes them.
func shellUnquote(s string) (string, bool) {
	var out strings.Builder
	for s != "" {
		switch {
		case strings.HasPrefix(s, `\'`):
			out.WriteByte('\'')
			s = s[2:]
		case s[0] == '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return "", false
			}
			out.WriteString(s[1 : 1+end])
			s = s[2+end:]
		default:
			return "", false
		}
	}
	return out.String(), true
}

// TestStatusShowsAStoreInTrouble: tokenagent status names the store and
// its state when it is not well, with the cause as text; it says nothing
// about a healthy or in-memory store.
func TestStatusShowsAStoreInTrouble(t *testing.T) {
	var b strings.Builder
	renderStore(&b, &clientlib.StoreHealth{Path: "/var/lib/tokenagent/tokens.db", State: "stalled", Error: "write\x1b[2J hung", Stalls: 1, PendingWrites: 3})
	out := b.String()
	for _, want := range []string{"/var/lib/tokenagent/tokens.db", "stalled", "write[2J hung", "3 writes pending", "served from memory"} {
		if !strings.Contains(out, want) {
			t.Errorf("status for a stalled store lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, '\x1b') {
		t.Error("status passed a terminal escape through")
	}
	for _, h := range []*clientlib.StoreHealth{nil, {State: "ok"}, {State: "memory"}} {
		b.Reset()
		if renderStore(&b, h); b.Len() != 0 {
			t.Errorf("status for store %+v printed %q, want nothing", h, b.String())
		}
	}
}

// TestClientExitCodes: each sentinel's exit code, ErrNotFound (an agent
// of another version) with the unreachable ones.
func TestClientExitCodes(t *testing.T) {
	for _, c := range []struct {
		kind error
		want int
	}{
		{clientlib.ErrAgentUnavailable, cli.ExitUnreachable},
		{clientlib.ErrShuttingDown, cli.ExitUnreachable},
		{clientlib.ErrNotFound, cli.ExitUnreachable},
		{clientlib.ErrUnknownProfile, cli.ExitDenied},
		{clientlib.ErrForbidden, cli.ExitDenied},
		{clientlib.ErrIdPRefused, cli.ExitIdP},
		{clientlib.ErrIdPUnavailable, cli.ExitIdP},
		{clientlib.ErrMinValid, cli.ExitIdP},
	} {
		err := clientExit(fmt.Errorf("clientlib: %w", &clientlib.Error{Kind: c.kind, Code: "x", Description: "d"}))
		var ee *cli.ExitError
		if !errors.As(err, &ee) || ee.Code != c.want {
			t.Errorf("clientExit(%v) = %v, want exit %d", c.kind, err, c.want)
		}
	}
}

// TestStatusShowsAssertionExpiry: a profile authenticated by a
// platform's token says when that token expires, or that it has.
func TestStatusShowsAssertionExpiry(t *testing.T) {
	now := time.Unix(2e9, 0)
	var b strings.Builder
	profiles := []clientlib.ProfileStatus{
		{Name: "k8s", ExpiresAt: now.Add(time.Hour), AssertionExpiresAt: now.Add(9 * time.Minute)},
		{Name: "stale", AssertionExpiresAt: now.Add(-time.Minute)},
		{Name: "secret", ExpiresAt: now.Add(time.Hour)},
	}
	if err := renderStatus(&b, profiles, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"1h0m0s (assertion expires in 9m0s)", "no token (assertion expired)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table %q does not say %q", out, want)
		}
	}
	if strings.Count(out, "assertion") != 2 {
		t.Errorf("status table %q: want the assertion named only for the two profiles that have one", out)
	}
}
