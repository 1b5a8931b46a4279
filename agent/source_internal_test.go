package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// TestClosedSourceNeverAsksTheIdP: a caller that looked a profile up just
// before a reload replaced it reaches the old, closed source. It must be
// sent on to the successor without an IdP request of its own; each such
// straggler used to cost one (seen as a flaky request count in
// TestReloadRacingAnInFlightFetch).
func TestClosedSourceNeverAsksTheIdP(t *testing.T) {
	srv := idptest.New()
	t.Cleanup(srv.Close)
	srv.AddClient(idptest.Client{ID: "c", Secret: "s3cret-for-the-closed-source-test"})
	cfg, err := config.ParseConfig([]byte(fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"s3cret-for-the-closed-source-test\"\n", srv.TokenURL)), "closed.toml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	s, err := a.lookup(ipc.Caller{UID: a.uid}, "p")
	if err != nil {
		t.Fatal(err)
	}
	s.close() // what a reload does to the source it replaces
	if _, err := s.token(context.Background(), 0); !errors.Is(err, errSourceClosed) {
		t.Errorf("token on a closed source = %v, want errSourceClosed", err)
	}
	if n := srv.TotalRequests(); n != 0 {
		t.Errorf("IdP requests from a closed source = %d, want 0", n)
	}
}
