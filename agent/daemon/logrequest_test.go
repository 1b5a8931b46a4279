package daemon

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// TestUnidentifiedIsLoggedAsUnidentified (issue 22, attack 1): a request
// whose caller nobody could identify is logged as "caller":"unidentified"
// with the reason, never with a uid (0 made it look like root's); an
// identified caller's line keeps its uid.
func TestUnidentifiedIsLoggedAsUnidentified(t *testing.T) {
	var buf bytes.Buffer
	log := logRequests(zerolog.New(&buf))
	log(door.RequestEvent{Door: "token_endpoint", Unidentified: true, Status: 401, Code: "invalid_client", Denied: true, Detail: "could not identify a caller at 127.0.0.1:40000"})
	log(door.RequestEvent{Door: "token_endpoint", Caller: ipc.Caller{UID: 1000}, Status: 401, Code: "invalid_client", Denied: true})
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	var unknown, known map[string]any
	json.Unmarshal(lines[0], &unknown)
	json.Unmarshal(lines[1], &known)
	if unknown["caller"] != "unidentified" || unknown["uid"] != nil || unknown["detail"] == nil {
		t.Errorf("unidentified caller's line = %s; want caller unidentified, a detail and no uid", lines[0])
	}
	if known["uid"] != float64(1000) || known["caller"] != nil {
		t.Errorf("identified caller's line = %s; want uid 1000", lines[1])
	}
}
