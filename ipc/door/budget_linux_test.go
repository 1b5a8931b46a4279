package door

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/tokenagent/tokenagent/ipc"
)

// TestUnidentifiedBudgetIsApart (issue 22, attack 1): a user who fills
// the connection cap (as itself) does not lock out callers nobody can
// identify, and those cannot take more than their own small budget.
// Before, unidentified callers shared the caps of everyone.
func TestUnidentifiedBudgetIsApart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Connections from this process (root's) are the unidentified ones,
	// as from another network namespace; the other user's are identified
	// by the kernel.
	identify := func(c net.Conn) (ipc.Caller, error) {
		caller, err := TCPCaller(c)
		if err == nil && caller.UID == uint32(os.Geteuid()) {
			return ipc.Caller{}, errPeerUnknown
		}
		return caller, err
	}
	const unidentifiedCap = 3
	l := Limit(ln, ListenConfig{MaxConnections: 4, MaxConnectionsPerUID: 4, MaxUnidentifiedConnections: unidentifiedCap}, identify)
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), Timeouts{})
	go srv.Serve(l)
	defer srv.Close()
	for range 4 { // uid 2 takes every identified slot
		dialAs(t, 2, ln.Addr().String())
	}
	dial := func() (*http.Response, error) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		req, _ := http.NewRequest("GET", "http://127.0.0.1/", nil)
		req.Write(c)
		return http.ReadResponse(bufio.NewReader(c), req)
	}
	for i := range unidentifiedCap {
		if resp, err := dial(); err != nil || resp.StatusCode != 200 {
			t.Fatalf("unidentified caller %d with uid 2 at the cap: %v %v, want 200", i+1, resp, err)
		}
	}
	if resp, err := dial(); err != nil || resp.StatusCode != 503 {
		t.Errorf("unidentified caller beyond its own budget: %v %v, want 503", resp, err)
	}
}
