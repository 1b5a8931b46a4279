package localapi_test

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
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

// BenchmarkFloorOverSocket is BenchmarkTokenOverSocket's floor: a bare
// net/http server on a Unix socket answering with the same bytes.
func BenchmarkFloorOverSocket(b *testing.B) {
	r, err := agenttest.Start("[profiles.bench]\ntoken_url = \"IDP\"\nclient_id = \"c\"\nclient_secret = \"bench-secret\"\n")
	if err != nil {
		b.Fatal(err)
	}
	r.IdP.AddClient(idptest.Client{ID: "c", Secret: "bench-secret", Method: "client_secret_basic"})
	_, body, err := get(r.Socket, "/v1/tokens/bench", nil)
	r.Close()
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "floor.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	floor := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, body)
	})}
	go floor.Serve(ln)
	defer floor.Close()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		hc := client(sock)
		for pb.Next() {
			resp, err := hc.Get("http://" + ipc.Host + "/v1/tokens/bench")
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
