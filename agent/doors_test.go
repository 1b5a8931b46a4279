package agent_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
)

// TestMatch: the token doors' question, answered by the engine from the
// profiles' settings: a profile by name first, else by client id with the
// requested scope, audience and resource; only the caller's profiles; a
// caller the kernel cannot identify only through local_secret; and a
// reload is seen by the next Match.
func TestMatch(t *testing.T) {
	h := newHarness(t, "")
	profile := func(name, client, extra string) string {
		return fmt.Sprintf("[profiles.%s]\ntoken_url = %q\nclient_id = %q\nclient_secret = %q\n%s\n", name, h.srv.TokenURL, client, testSecret, extra)
	}
	base := profile("read", "c", `scopes = ["read"]`) + profile("write", "c", `scopes = ["read", "write"]`+"\naudience = \"api\"") +
		profile("mine", "m", "allow_uids = [4242]\nlocal_secret = \"a2V5LWZvci10aGUtbG9jYWwtc2VjcmV0LXRlc3Q\"")
	a := h.newAgent(base)
	other := ipc.Caller{UID: 4242, GID: 4242}
	stranger := ipc.Caller{UID: 4343, GID: 4343}
	for _, tc := range []struct {
		name     string
		caller   *ipc.Caller
		q        ipc.ClientMatch
		want     string
		wantKind error
		wantCode string
	}{
		{"by name", &self, ipc.ClientMatch{ClientID: "read"}, "read", nil, ""},
		{"by client id and scope", &self, ipc.ClientMatch{ClientID: "c", Scopes: []string{"write"}}, "write", nil, ""},
		{"by client id and audience", &self, ipc.ClientMatch{ClientID: "c", Audience: "api"}, "write", nil, ""},
		{"two fit", &self, ipc.ClientMatch{ClientID: "c", Scopes: []string{"read"}}, "", ipc.ErrBadRequest, "invalid_request"},
		{"no scope fits", &self, ipc.ClientMatch{ClientID: "c", Scopes: []string{"admin"}}, "", ipc.ErrBadRequest, "invalid_scope"},
		{"no target fits", &self, ipc.ClientMatch{ClientID: "c", Audience: "other"}, "", ipc.ErrBadRequest, "invalid_target"},
		{"unknown", &self, ipc.ClientMatch{ClientID: "nope"}, "", ipc.ErrUnknownProfile, ""},
		{"allowed uid", &other, ipc.ClientMatch{ClientID: "m"}, "mine", nil, ""},
		{"not theirs", &stranger, ipc.ClientMatch{ClientID: "mine"}, "", ipc.ErrUnknownProfile, ""},
		{"unidentified, local_secret", nil, ipc.ClientMatch{ClientID: "mine", Secret: "a2V5LWZvci10aGUtbG9jYWwtc2VjcmV0LXRlc3Q"}, "mine", nil, ""},
		{"unidentified, wrong secret", nil, ipc.ClientMatch{ClientID: "mine", Secret: "guess"}, "", ipc.ErrUnknownProfile, ""},
		{"unidentified, no local_secret", nil, ipc.ClientMatch{ClientID: "read", Secret: testSecret}, "", ipc.ErrUnknownProfile, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Match(tc.caller, tc.q)
			var e *ipc.Error
			switch {
			case tc.wantKind == nil && (err != nil || got != tc.want):
				t.Errorf("Match(%+v) = %q, %v; want %q", tc.q, got, err, tc.want)
			case tc.wantKind != nil && (!errors.Is(err, tc.wantKind) || !errors.As(err, &e) || e.Code != tc.wantCode):
				t.Errorf("Match(%+v) = %q, %v; want %v with code %q", tc.q, got, err, tc.wantKind, tc.wantCode)
			}
		})
	}
	for _, c := range []struct {
		caller ipc.Caller
		want   bool
	}{{self, true}, {ipc.Caller{UID: 0}, true}, {other, true}, {stranger, false}, {ipc.Caller{UID: 4343, GID: 4343, Groups: []uint32{4242}}, false}} {
		if got := a.MayUseAny(c.caller); got != c.want {
			t.Errorf("MayUseAny(%v) = %v, want %v", c.caller, got, c.want)
		}
	}
	cfg, err := config.ParseConfig([]byte(base+profile("added", "n", "")+profile("group", "g", "allow_gids = [4545]")), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Match(&self, ipc.ClientMatch{ClientID: "n"}); err != nil || got != "added" {
		t.Errorf("after a reload that added a profile for client n: Match = %q, %v; want added", got, err)
	}
	if !a.MayUseAny(ipc.Caller{UID: 4343, GID: 1, Groups: []uint32{4545}}) {
		t.Error("after a reload that allowed gid 4545: MayUseAny of a member = false, want true")
	}
}

// TestWeakLocalSecretRefused (issue 22, attack 1): a local_secret with
// less than 128 bits of randomness is refused at load (and so by
// check-config), the error naming the profile and how to make one, never
// the secret.
func TestWeakLocalSecretRefused(t *testing.T) {
	for _, tc := range []struct {
		secret string
		ok     bool
	}{
		{"1234", false},
		{"the-local-secret", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"0123456789abcdef0123456789abcdef", true}, // openssl rand -hex 16 looks like this
		{"q3cZ0lY8m0yJ9Xo2bVtN1w6rKpE4sHdGfA7uLiUcMe8=", true},
	} {
		cfg, err := config.ParseConfig([]byte(fmt.Sprintf("store = \"memory\"\n[profiles.zeebe]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\nclient_secret = %q\nlocal_secret = %q\n", testSecret, tc.secret)), "weak.toml")
		if err != nil {
			t.Fatal(err)
		}
		a, err := agent.New(cfg, agent.Options{})
		if a != nil {
			a.Close()
		}
		if tc.ok != (err == nil) {
			t.Errorf("local_secret of %d characters: New error %v, want ok %t", len(tc.secret), err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), `profile "zeebe"`) || !strings.Contains(err.Error(), "openssl rand -base64 32") || strings.Contains(err.Error(), tc.secret)) {
			t.Errorf("error %q: want the profile named, the way to make a secret, and not the secret", err)
		}
	}
}
