package fleet_test

import (
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent"
)

// TestFleetConfig: [fleet] is checked at load, naming the key and what to
// write; a literal seal key is refused without being repeated.
func TestFleetConfig(t *testing.T) {
	profile := "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:HOME\"\nfleet = false\n"
	ok := "[fleet]\nendpoints = [\"https://etcd-1:2379\"]\nseal_key = \"file:/etc/tokenagent/fleet.key\"\n"
	if _, err := agent.ParseConfig([]byte(ok+profile), "ok.toml"); err != nil {
		t.Errorf("a good [fleet]: %v", err)
	}
	for _, tc := range []struct{ fleet, want string }{
		{"[fleet]\nseal_key = \"env:K\"\n", "endpoints"},
		{"[fleet]\nendpoints = [\"etcd-1:2379\"]\nseal_key = \"env:K\"\n", `"etcd-1:2379" is not an http(s) URL`},
		{"[fleet]\nendpoints = [\"https://e:2379\"]\nseal_key = \"c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwMTIzNDU2\"\n", "seal_key: use file:PATH"},
		{"[fleet]\nendpoints = [\"https://e:2379\"]\nseal_key = \"env:K\"\nprefix = \"tokenagent\"\n", "start and end it with /"},
	} {
		_, err := agent.ParseConfig([]byte(tc.fleet+profile), "bad.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.fleet, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("the error repeats the seal key: %v", err)
		}
	}
}
