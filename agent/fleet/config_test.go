package fleet_test

import (
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/config"
)

// TestFleetConfig: [fleet] is checked at load, naming the key and what to
// write; a literal seal key is refused without being repeated.
func TestFleetConfig(t *testing.T) {
	profile := "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:HOME\"\nfleet = false\n"
	ok := "[fleet]\nendpoints = [\"https://etcd-1:2379\"]\nseal_key = \"file:/etc/tokenagent/fleet.key\"\n"
	if _, err := config.ParseConfig([]byte(ok+profile), "ok.toml"); err != nil {
		t.Errorf("a good [fleet]: %v", err)
	}
	// Plain http to another host is allowed, with a warning; to loopback
	// without one.
	for endpoint, warned := range map[string]bool{"http://etcd-1:2379": true, "http://127.0.0.1:2379": false, "https://etcd-1:2379": false} {
		cfg, err := config.ParseConfig([]byte("[fleet]\nendpoints = [\""+endpoint+"\"]\nseal_key = \"env:K\"\n"+profile), "w.toml")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(strings.Join(cfg.Warnings(), "\n"), "plain http"); got != warned {
			t.Errorf("[fleet] endpoint %s: warned %v, want %v", endpoint, got, warned)
		}
	}
	for _, tc := range []struct{ fleet, want string }{
		{"[fleet]\nseal_key = \"env:K\"\n", "endpoints"},
		{"[fleet]\nendpoints = [\"etcd-1:2379\"]\nseal_key = \"env:K\"\n", `"etcd-1:2379" is not an http(s) URL`},
		{"[fleet]\nendpoints = [\"https://e:2379\"]\nseal_key = \"c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwMTIzNDU2\"\n", "seal_key: use file:PATH"},
		{"[fleet]\nendpoints = [\"https://e:2379\"]\nseal_key = \"env:K\"\nprefix = \"tokenagent\"\n", "start and end it with /"},
		{"[fleet]\nendpoints = [\"https://e:2379\"]\nseal_key = \"env:K\"\nhost = \"a\\u001b[31mb\"\n", "host: at most 255 printable"},
	} {
		_, err := config.ParseConfig([]byte(tc.fleet+profile), "bad.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.fleet, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("the error repeats the seal key: %v", err)
		}
	}
}
