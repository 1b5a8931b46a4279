package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
)

// tcpClient is an HTTP client for loopback TCP, keep-alive unless
// disabled.
func tcpClient(keepAlive bool, conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: conns}}
}

// tokenEndpoint measures a cache hit at the loopback OAuth token endpoint
// (what an unmodified client's OAuth library sends) beside a bare net/http
// server on loopback TCP that answers the same POST with the same bytes,
// interleaved in one run. The agent's extra work per request is the
// form parsing, the profile match, and the caller's uid read from the
// kernel (once per connection).
func tokenEndpoint() error {
	r, err := startAgent("token_endpoint = \"127.0.0.1:0\"\n[profiles.bench]\ntoken_url = \"IDP\"\nclient_id = \"c\"\nclient_secret = \"bench-secret\"\n")
	if err != nil {
		return err
	}
	defer r.Close()
	form, post := tokenPost("bench")
	resp, err := http.Post(r.TokenEndpoint, "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("token endpoint: %s: %s", resp.Status, body)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	floor := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	})}
	go floor.Serve(ln)
	defer floor.Close()
	floorURL := "http://" + ln.Addr().String() + "/oauth2/token"

	fmt.Println("## Cache hit at the loopback token endpoint")
	fmt.Println()
	fmt.Println("`POST /oauth2/token` (form-encoded client_credentials, as OAuth libraries send it) beside a bare `net/http` server on loopback TCP answering the same POST with the same bytes (the floor); agent and floor alternate in 20 rounds.")
	fmt.Println()
	err = floorTable(
		func(keepAlive bool, clients int) func() error {
			hc := tcpClient(keepAlive, clients)
			return func() error { return post(hc, r.TokenEndpoint) }
		},
		func(keepAlive bool, clients int) func() error {
			hc := tcpClient(keepAlive, clients)
			return func() error { return post(hc, floorURL) }
		})
	if err != nil {
		return err
	}
	if n := r.IdP.TotalRequests(); n != 1 {
		return fmt.Errorf("IdP requests during the token endpoint runs = %d, want 1", n)
	}
	fmt.Println()
	return nil
}

// tokenPost is the form of a client_credentials request for clientID,
// and a function that posts it and wants 200.
func tokenPost(clientID string) (form string, post func(hc *http.Client, u string) error) {
	form = url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {"unused"}}.Encode()
	return form, func(hc *http.Client, u string) error {
		return drain(hc.Post(u, "application/x-www-form-urlencoded", strings.NewReader(form)))
	}
}

// fileSink measures what a script pays to read its token from a file sink
// beside reading any other small file of the same size in the same
// directory, interleaved.
func fileSink(work string) error {
	dir := filepath.Join(work, "sink")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	sink := filepath.Join(dir, "bench.token")
	// A profile with a file sink is fetched at start: its client must be
	// the IdP's before the daemon starts.
	r, err := agenttest.StartWith(fmt.Sprintf("[profiles.bench]\ntoken_url = \"IDP\"\nclient_id = \"c\"\nclient_secret = \"bench-secret\"\n[[profiles.bench.files]]\npath = %q\n", sink),
		agenttest.Options{Clients: []idptest.Client{{ID: "c", Secret: "bench-secret", Method: "client_secret_basic"}}})
	if err != nil {
		return err
	}
	defer r.Close()
	// Once this request is answered the sink holds the token.
	if err := get(unixClient(r.Socket, false, 1), "http://tokenagent/v1/tokens/bench"); err != nil {
		return err
	}
	tok, err := os.ReadFile(sink)
	if err != nil {
		return err
	}
	other := filepath.Join(dir, "other.txt")
	if err := os.WriteFile(other, bytes.Repeat([]byte("x"), len(tok)), 0o600); err != nil {
		return err
	}
	read := func(path string) func() error {
		return func() error {
			b, err := os.ReadFile(path)
			if err == nil && len(b) == 0 {
				err = fmt.Errorf("%s is empty", path)
			}
			return err
		}
	}
	n := *requests * 5
	a, f, err := interleaved(read(sink), read(other), n, 1, 20)
	if err != nil {
		return err
	}
	fmt.Println("## Reading a file sink")
	fmt.Println()
	fmt.Printf("`os.ReadFile` of the profile's file sink (%d bytes, written by the agent) beside the same read of another %d-byte file in the same directory; %d reads each, alternating in 20 rounds.\n", len(tok), len(tok), n)
	fmt.Println()
	fmt.Println("| read | p50 | p99 | reads/s |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| file sink | %v | %v | %.0f |\n", us(a.p50), us(a.p99), a.rps)
	fmt.Printf("| other small file | %v | %v | %.0f |\n", us(f.p50), us(f.p99), f.rps)
	fmt.Printf("| ratio | %.2f | %.2f | %.2f |\n", float64(a.p50)/float64(f.p50), float64(a.p99)/float64(f.p99), a.rps/f.rps)
	fmt.Println()
	return nil
}
