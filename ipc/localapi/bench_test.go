package localapi_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// BenchmarkTokenOverSocket is a cache hit through the whole socket door
// (listener, identity, guard, route, engine, JSON, event, log), one
// kept-alive connection per goroutine.
func BenchmarkTokenOverSocket(b *testing.B) {
	r, err := agenttest.StartWith("[profiles.bench]\ntoken_url = \"IDP\"\nclient_id = \"c\"\nclient_secret = \"bench-secret\"\n", agenttest.Options{Log: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	r.IdP.AddClient(idptest.Client{ID: "c", Secret: "bench-secret", Method: "client_secret_basic"})
	url := "http://" + ipc.Host + "/v1/tokens/bench"
	if status, body, err := get(r.Socket, "/v1/tokens/bench", nil); err != nil || status != 200 {
		b.Fatalf("first token: %d %s %v", status, body, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		hc := client(r.Socket)
		for pb.Next() {
			resp, err := hc.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
