package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/daemon"
)

// socketClient is an HTTP client for the daemon's socket.
func socketClient(socket string, keepAlive bool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: !keepAlive,
	}}
}

// do sends req with hc and returns its status and body.
func do(t *testing.T, hc *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

func get(u string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, u, nil)
	return r
}

func postForm(u, form string) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// TestLogVolumeDoesNotGrowWithRequests (issue 23, item 4): at the default
// level, tokens served, an OAuth client looping on a client_id it may not
// use (a denial each time) and a caller guessing profile names (404s)
// write a bounded number of lines however many requests come — a soak's
// log reached a million lines in 11 minutes, one per denial. The first
// denial and the first refusal are still there.
func TestLogVolumeDoesNotGrowWithRequests(t *testing.T) {
	f := newFixture(t, `token_endpoint = "127.0.0.1:0"`)
	d, buf := f.loggedDaemon(t, daemon.Options{})
	_, stop := serve(t, d)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	sock := socketClient(f.socket, true)
	tcp := &http.Client{}
	endpoint := "http://" + d.TokenEndpointAddr().String() + "/oauth2/token"
	denied := url.Values{"grant_type": {"client_credentials"}, "client_id": {"not-a-profile"}, "client_secret": {"x"}}.Encode()
	const rounds = 20000 / 3
	for i := range rounds {
		if code, body := do(t, sock, get("http://tokenagent/v1/tokens/p")); code != 200 {
			t.Fatalf("token p = %d %s", code, body)
		}
		if code, _ := do(t, tcp, postForm(endpoint, denied)); code != 401 {
			t.Fatalf("token endpoint with an unknown client_id = %d, want 401", code)
		}
		if code, _ := do(t, sock, get(fmt.Sprintf("http://tokenagent/v1/tokens/guess%d", i%50))); code != 404 {
			t.Fatalf("unknown profile = %d, want 404", code)
		}
	}
	stopped = true
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Count(out, "\n")
	const bound = 100 // start, stop, the first lines of each kind: not per request
	if lines > bound {
		head := out
		if len(head) > 2000 {
			head = head[:2000]
		}
		t.Errorf("%d requests at the default level wrote %d log lines, want at most %d:\n%s", 3*rounds, lines, bound, head)
	}
	if !strings.Contains(out, `"request denied"`) || !strings.Contains(out, `"status":404`) {
		t.Errorf("the first denial and the first 404 are not logged:\n%s", out)
	}
	if strings.Contains(out, `"status":200`) {
		t.Errorf("a served request was logged at the default level")
	}
	// Nothing refused goes untold: each is a line or in a count.
	told := 0
	for _, line := range strings.Split(out, "\n") {
		var e struct {
			Status     int `json:"status"`
			Suppressed int `json:"suppressed"`
		}
		json.Unmarshal([]byte(line), &e)
		if e.Status != 0 {
			told++
		}
		told += e.Suppressed
	}
	if told != 2*rounds {
		t.Errorf("%d refused requests, %d logged or counted as suppressed; want all", 2*rounds, told)
	}
}
