package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/clientlib"
)

// TestHelperAsk is not a test: run as a child with DAEMON_TEST_ASK set to
// a socket path, it asks for profile p there and prints the status.
func TestHelperAsk(t *testing.T) {
	sock := os.Getenv("DAEMON_TEST_ASK")
	if sock == "" {
		t.Skip("helper process only")
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://tokenagent/v1/tokens/p")
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(0)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	os.Exit(0)
}

func scrape(t *testing.T, addr, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestMetricsListenShowsNoProfileNames (issue 22, attack 8): metrics_listen
// answered every local user with every profile's name and use, and the
// socket door counted a request refused a profile under that profile's
// name. Now a refused request is counted with no profile label; with
// metrics_token a scrape needs the bearer token (401 without it, from a
// real TCP client); without one, no per-profile series unless
// metrics_profiles = true.
func TestMetricsListenShowsNoProfileNames(t *testing.T) {
	f := newFixture(t, "")
	run, err := os.MkdirTemp("", "agent-") // another user must reach the socket
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	os.Chmod(run, 0o755)
	f.socket = filepath.Join(run, "run", "agent.sock")
	const secret = "metrics-bearer-0123456789abcdef"
	tokenFile := filepath.Join(f.dir, "metrics.token")
	os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600)
	for _, tc := range []struct {
		name, settings, token string
		profiles              bool
	}{
		{"token", fmt.Sprintf("metrics_token = %q", "file:"+tokenFile), secret, true},
		{"no token", "", "", false},
		{"metrics_profiles", "metrics_profiles = true", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			f.write(t, fmt.Sprintf("socket_mode = \"0666\"\nmetrics_listen = %q\n%s", maddr, tc.settings), "p")
			_, stop := serve(t, bindDaemon(t, f))
			defer stop()
			c := &clientlib.Client{Socket: f.socket}
			defer c.Close()
			if _, err := c.Token(context.Background(), "p"); err != nil {
				t.Fatal(err)
			}
			if line, _ := runAs(t, "TestHelperAsk", "DAEMON_TEST_ASK="+f.socket); line != "404" {
				t.Fatalf("uid %d asking for p = %s, want 404", squatterUID, line)
			}
			if tc.token != "" {
				for _, wrong := range []string{"", "wrong"} {
					if code, body := scrape(t, maddr, wrong); code != http.StatusUnauthorized || strings.Contains(body, "tokenagent_") || strings.Contains(body, secret) {
						t.Errorf("scrape with token %q = %d %q, want 401 without series", wrong, code, body)
					}
				}
			}
			code, body := scrape(t, maddr, tc.token)
			if code != http.StatusOK {
				t.Fatalf("scrape = %d %s", code, body)
			}
			for _, line := range strings.Split(body, "\n") {
				if strings.Contains(line, `profile="p"`) && strings.Contains(line, `outcome="unknown_profile"`) {
					t.Errorf("a refused request is counted under the profile's name: %s", line)
				}
			}
			if got := strings.Contains(body, `profile="p"`); got != tc.profiles {
				t.Errorf("metrics_listen shows profile names: %v, want %v\n%s", got, tc.profiles, body)
			}
			if !strings.Contains(body, `outcome="unknown_profile"`) {
				t.Errorf("the refused request is not counted at all:\n%s", body)
			}
		})
	}
}
