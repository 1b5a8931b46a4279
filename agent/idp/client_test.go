package idp_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/agent/idptest"
)

const trickySecret = "s3cr+t/%:x"

func newServer(t *testing.T) *idptest.Server {
	t.Helper()
	srv := idptest.New()
	t.Cleanup(srv.Close)
	return srv
}

func fetch(t *testing.T, cfg idp.Config) (*idp.Response, error) {
	t.Helper()
	c, err := idp.New(cfg)
	if err != nil {
		t.Fatalf("idp.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Fetch(ctx)
}

func TestAuthMethods(t *testing.T) {
	srv := newServer(t)
	rsaKey := testKeys(t).rsa
	srv.AddClient(idptest.Client{ID: "basic", Secret: trickySecret, Method: idp.AuthClientSecretBasic})
	srv.AddClient(idptest.Client{ID: "post", Secret: trickySecret, Method: idp.AuthClientSecretPost})
	srv.AddClient(idptest.Client{ID: "jwt", Method: idp.AuthPrivateKeyJWT, PublicKey: rsaKey.Public()})
	signer, err := idp.NewSigner(idp.SignerConfig{Key: rsaKey})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  idp.Config
	}{
		{"client_secret_basic", idp.Config{TokenURL: srv.TokenURL, ClientID: "basic", ClientSecret: trickySecret}},
		{"client_secret_post", idp.Config{TokenURL: srv.TokenURL, ClientID: "post", ClientSecret: trickySecret, AuthMethod: idp.AuthClientSecretPost}},
		{"private_key_jwt", idp.Config{TokenURL: srv.TokenURL, ClientID: "jwt", AuthMethod: idp.AuthPrivateKeyJWT, Signer: signer}},
		{"discovery", idp.Config{Issuer: srv.URL, ClientID: "basic", ClientSecret: trickySecret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := fetch(t, tt.cfg)
			if err != nil {
				t.Fatalf("Fetch() error = %v", err)
			}
			claims, err := srv.VerifyToken(resp.AccessToken)
			if err != nil {
				t.Fatalf("token does not verify: %v", err)
			}
			if claims["client_id"] != tt.cfg.ClientID {
				t.Errorf("client_id claim = %v, want %q", claims["client_id"], tt.cfg.ClientID)
			}
			if resp.ExpiresIn != time.Hour || resp.TokenType != "Bearer" {
				t.Errorf("ExpiresIn, TokenType = %v, %q; want 1h, Bearer", resp.ExpiresIn, resp.TokenType)
			}
		})
	}
}

// The server side of RFC 6749 §2.3.1: a secret sent without form-urlencoding
// is rejected, so the test above proves the client encodes.
func TestBasicAuthRawSecretRejected(t *testing.T) {
	srv := newServer(t)
	srv.AddClient(idptest.Client{ID: "basic", Secret: trickySecret, Method: idp.AuthClientSecretBasic})
	req, _ := http.NewRequest("POST", srv.TokenURL, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("basic", trickySecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("raw secret in Basic: status %d, want 401", resp.StatusCode)
	}
}

func TestRequestParameters(t *testing.T) {
	srv := newServer(t)
	srv.AddClient(idptest.Client{ID: "c", Secret: "s", Method: idp.AuthClientSecretPost})
	_, err := fetch(t, idp.Config{
		TokenURL: srv.TokenURL, ClientID: "c", ClientSecret: "s", AuthMethod: idp.AuthClientSecretPost,
		Scopes: []string{"read", "write"}, Audience: "zeebe-api",
		Resource: []string{"https://a.example", "https://b.example"},
		Params:   map[string]string{"prompt": "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	form := srv.LastForm("c")
	checks := map[string]string{
		"grant_type": "client_credentials", "scope": "read write", "audience": "zeebe-api", "prompt": "none",
	}
	for k, want := range checks {
		if got := form.Get(k); got != want {
			t.Errorf("form[%q] = %q, want %q", k, got, want)
		}
	}
	if got := form["resource"]; len(got) != 2 || got[0] != "https://a.example" || got[1] != "https://b.example" {
		t.Errorf("form[resource] = %q, want both resources in order", got)
	}
}

func TestResponses(t *testing.T) {
	srv := newServer(t)
	srv.AddClient(idptest.Client{ID: "c", Secret: "s", Method: idp.AuthClientSecretBasic})
	cfg := idp.Config{TokenURL: srv.TokenURL, ClientID: "c", ClientSecret: "s"}
	huge := bytes.Repeat([]byte("x"), 10<<20)
	tests := []struct {
		name          string
		fault         idptest.Fault
		wantExpiresIn time.Duration // for successes
		wantErr       bool
		transient     bool
		code          string
		status        int
		retryAfter    time.Duration
	}{
		{name: "normal", wantExpiresIn: time.Hour},
		{name: "expires_in string", fault: idptest.Fault{ExpiresIn: `"3599"`}, wantExpiresIn: 3599 * time.Second},
		{name: "expires_in non-numeric string", fault: idptest.Fault{ExpiresIn: `"soon"`}, wantExpiresIn: 0},
		{name: "expires_in missing", fault: idptest.Fault{OmitExpiresIn: true}, wantExpiresIn: 0},
		{name: "expires_in zero", fault: idptest.Fault{ExpiresIn: `0`}, wantExpiresIn: 0},
		{name: "expires_in negative", fault: idptest.Fault{ExpiresIn: `-30`}, wantExpiresIn: 0},
		{name: "expires_in float", fault: idptest.Fault{ExpiresIn: `59.5`}, wantExpiresIn: 59500 * time.Millisecond},
		{name: "expires_in huge", fault: idptest.Fault{ExpiresIn: `1e300`}, wantExpiresIn: 100 * 365 * 24 * time.Hour},
		{name: "expires_in object", fault: idptest.Fault{ExpiresIn: `{"a":1}`}, wantExpiresIn: 0},
		{name: "invalid_client", fault: idptest.Fault{Status: 401, Error: "invalid_client", Description: "bad secret"},
			wantErr: true, code: "invalid_client", status: 401},
		{name: "invalid_scope", fault: idptest.Fault{Error: "invalid_scope"}, wantErr: true, code: "invalid_scope", status: 400},
		{name: "500", fault: idptest.Fault{Status: 500}, wantErr: true, transient: true, status: 500},
		{name: "503 temporarily_unavailable", fault: idptest.Fault{Status: 503, Error: "temporarily_unavailable"},
			wantErr: true, transient: true, status: 503, code: "temporarily_unavailable"},
		{name: "429 seconds", fault: idptest.Fault{Status: 429, RetryAfter: "30"}, wantErr: true, transient: true, status: 429, retryAfter: 30 * time.Second},
		{name: "200 with error", fault: idptest.Fault{Status: 200, Error: "server_error"}, wantErr: true, transient: true, status: 200, code: "server_error"},
		{name: "200 with permanent error", fault: idptest.Fault{Status: 200, Error: "invalid_client"}, wantErr: true, status: 200, code: "invalid_client"},
		{name: "HTML 200", fault: idptest.Fault{Body: []byte("<html>maintenance</html>")}, wantErr: true, transient: true, status: 200},
		{name: "HTML 404", fault: idptest.Fault{Status: 404, Body: []byte("<html>not found</html>")}, wantErr: true, status: 404},
		{name: "no access_token", fault: idptest.Fault{Body: []byte(`{"token_type":"Bearer"}`), ContentType: "application/json"}, wantErr: true, transient: true, status: 200},
		{name: "JSON array", fault: idptest.Fault{Body: []byte(`[1,2]`), ContentType: "application/json"}, wantErr: true, transient: true, status: 200},
		{name: "10 MiB body", fault: idptest.Fault{Body: huge}, wantErr: true, transient: true, status: 200},
		{name: "dropped connection", fault: idptest.Fault{Drop: true}, wantErr: true, transient: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.SetFault(tt.fault)
			defer srv.ClearFault()
			resp, err := fetch(t, cfg)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Fetch() error = %v, want success", err)
				}
				if resp.ExpiresIn != tt.wantExpiresIn {
					t.Errorf("ExpiresIn = %v, want %v", resp.ExpiresIn, tt.wantExpiresIn)
				}
				return
			}
			var ie *idp.Error
			if !errors.As(err, &ie) {
				t.Fatalf("Fetch() error = %v (%T), want *idp.Error", err, err)
			}
			if ie.Transient != tt.transient || ie.Code != tt.code || ie.StatusCode != tt.status || ie.RetryAfter != tt.retryAfter {
				t.Errorf("error = {Transient:%v Code:%q Status:%d RetryAfter:%v}, want {%v %q %d %v} (%v)",
					ie.Transient, ie.Code, ie.StatusCode, ie.RetryAfter, tt.transient, tt.code, tt.status, tt.retryAfter, err)
			}
			if !strings.Contains(err.Error(), srv.TokenURL) {
				t.Errorf("error %q does not name the endpoint", err)
			}
			if strings.Contains(err.Error(), "<html>") || strings.Contains(err.Error(), "xxxx") {
				t.Errorf("error %q echoes the body", err)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	srv := newServer(t)
	srv.AddClient(idptest.Client{ID: "c", Secret: "s", Method: idp.AuthClientSecretBasic})
	srv.SetFault(idptest.Fault{Delay: time.Minute})
	c, _ := idp.New(idp.Config{TokenURL: srv.TokenURL, ClientID: "c", ClientSecret: "s"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Fetch(ctx)
	var ie *idp.Error
	if !errors.As(err, &ie) || !ie.Transient || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch() past deadline = %v, want transient *idp.Error wrapping DeadlineExceeded", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"30", 30 * time.Second}, {" 5 ", 5 * time.Second}, {"0", 0}, {"-4", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"99999999999999", 365 * 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := idp.ParseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDiscovery(t *testing.T) {
	srv := newServer(t)
	srv.AddClient(idptest.Client{ID: "c", Secret: "s", Method: idp.AuthClientSecretBasic})

	t.Run("finds token endpoint", func(t *testing.T) {
		c, _ := idp.New(idp.Config{Issuer: srv.URL + "/", ClientID: "c", ClientSecret: "s"})
		got, err := c.TokenURL(context.Background())
		if err != nil || got != srv.TokenURL {
			t.Errorf("TokenURL() = %q, %v; want %q", got, err, srv.TokenURL)
		}
	})
	t.Run("RFC 8414 fallback", func(t *testing.T) {
		mux := http.NewServeMux()
		var base string
		mux.HandleFunc("/.well-known/oauth-authorization-server/tenant", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"issuer":"` + base + `/tenant","token_endpoint":"` + srv.TokenURL + `"}`))
		})
		ts := httptest.NewServer(mux)
		defer ts.Close()
		base = ts.URL
		c, _ := idp.New(idp.Config{Issuer: ts.URL + "/tenant", ClientID: "c", ClientSecret: "s"})
		if _, err := c.Fetch(context.Background()); err != nil {
			t.Errorf("Fetch() via RFC 8414 metadata: %v", err)
		}
	})
	t.Run("issuer mismatch", func(t *testing.T) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"issuer":"https://evil.example","token_endpoint":"https://evil.example/token"}`))
		}))
		defer ts.Close()
		c, _ := idp.New(idp.Config{Issuer: ts.URL, ClientID: "c", ClientSecret: "s"})
		_, err := c.Fetch(context.Background())
		var ie *idp.Error
		if !errors.As(err, &ie) || ie.Transient || !strings.Contains(err.Error(), "evil.example") {
			t.Errorf("Fetch() with mismatched issuer = %v, want permanent error naming it", err)
		}
	})
	t.Run("no metadata", func(t *testing.T) {
		ts := httptest.NewServer(http.NotFoundHandler())
		defer ts.Close()
		c, _ := idp.New(idp.Config{Issuer: ts.URL, ClientID: "c", ClientSecret: "s"})
		_, err := c.Fetch(context.Background())
		var ie *idp.Error
		if !errors.As(err, &ie) || ie.Transient || !strings.Contains(err.Error(), "set token_url") {
			t.Errorf("Fetch() with no discovery document = %v, want permanent error suggesting token_url", err)
		}
	})
}

func TestCheckEndpointURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://login.example.com/oauth2/token", true},
		{"http://127.0.0.1:8080/token", true},
		{"http://localhost/token", true},
		{"http://[::1]:9/token", true},
		{"http://login.example.com/token", false},
		{"login.example.com/token", false},
		{"https:///token", false},
		{"https://x.example/token#frag", false},
		{"ftp://x.example/", false},
	}
	for _, tt := range tests {
		if err := idp.CheckEndpointURL(tt.url); (err == nil) != tt.ok {
			t.Errorf("CheckEndpointURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  idp.Config
		want string
	}{
		{"no client id", idp.Config{TokenURL: "https://x/t", ClientSecret: "s"}, "client_id"},
		{"no endpoint", idp.Config{ClientID: "c", ClientSecret: "s"}, "token_url"},
		{"no secret", idp.Config{TokenURL: "https://x/t", ClientID: "c"}, "secret"},
		{"no signer", idp.Config{TokenURL: "https://x/t", ClientID: "c", AuthMethod: idp.AuthPrivateKeyJWT}, "private key"},
		{"bad method", idp.Config{TokenURL: "https://x/t", ClientID: "c", AuthMethod: "magic"}, "magic"},
	}
	for _, tt := range tests {
		if _, err := idp.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%s) = %v, want error mentioning %q", tt.name, err, tt.want)
		}
	}
}

// TestCleartextOnlyToLoopback: plain http goes only to an address that is
// a loopback IP when dialled; one that is not gets no connection, let
// alone the credentials.
func TestCleartextOnlyToLoopback(t *testing.T) {
	var external net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			external = ipn.IP
			break
		}
	}
	if external == nil {
		t.Skip("no non-loopback IPv4 address on this host")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(external.String(), "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", external, err)
	}
	var mu sync.Mutex
	accepted := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			c.Close()
		}
	}()
	defer ln.Close()
	c, err := idp.New(idp.Config{TokenURL: "http://" + ln.Addr().String() + "/token", ClientID: "c", ClientSecret: "cleartext-secret"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "https") {
		t.Errorf("Fetch over plain http to %s = %v, want a refusal saying to use https", ln.Addr(), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepted != 0 {
		t.Errorf("the non-loopback server accepted %d connections; want none", accepted)
	}
	// Loopback still works over plain http (the test IdP, a local Keycloak).
	srv := newServer(t)
	srv.AddClient(idptest.Client{ID: "c", Secret: "s", Method: idp.AuthClientSecretBasic})
	local, _ := idp.New(idp.Config{TokenURL: srv.TokenURL, ClientID: "c", ClientSecret: "s"})
	if _, err := local.Fetch(context.Background()); err != nil {
		t.Errorf("plain http to loopback: %v", err)
	}
}
