// Package idptest is a real OAuth 2.0 token endpoint, in process, for tests
// and for the agent's demo mode. It authenticates clients the way production
// identity providers do (client_secret_basic with RFC 6749 §2.3.1 decoding,
// client_secret_post, private_key_jwt with signature, claim and jti replay
// checks, and a platform's token for a federated client: Federated,
// Platform, Project), issues signed JWT access tokens, counts requests per client, and
// injects faults: any status and error body, Retry-After, delays, garbage
// bodies, dropped connections and odd expires_in values.
//
// Every test in the project uses it instead of mocking HTTP.
package idptest

import (
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Client is a registered OAuth client.
type Client struct {
	// ID is the client_id.
	ID string
	// Secret authenticates client_secret_basic and client_secret_post.
	Secret string
	// Method is the only auth method accepted for this client:
	// "client_secret_basic", "client_secret_post", "private_key_jwt" or
	// "client_assertion" (a platform's token, see Federated);
	// or "jwt_bearer" for a service account (ID its client_email) that
	// signs RFC 7523 jwt-bearer grants.
	Method string
	// PublicKey verifies private_key_jwt assertions and jwt_bearer grants.
	PublicKey crypto.PublicKey
	// Federated, for Method "client_assertion", is the platform whose
	// tokens authenticate the client (sent with its client_id).
	Federated *Federated
	// Scopes, when set, are the scopes the client may ask for.
	Scopes []string
}

// Fault changes how the server answers token requests until cleared.
type Fault struct {
	// Status, when not 0, is the HTTP status of the answer.
	Status int
	// Error and Description, when Error is set, make an RFC 6749 error body
	// (sent with Status, or 400 when Status is 0; with 200 it makes the
	// "200 with an error" answer some servers give).
	Error, Description string
	// Echo adds the request's client assertion, and its form, to
	// Description: what a careless IdP's error text does.
	Echo bool
	// RetryAfter is sent verbatim as the Retry-After header.
	RetryAfter string
	// Delay holds the answer back (the request's cancellation still ends it).
	Delay time.Duration
	// Hold, when not nil, holds the answer back until it is closed: a test
	// controls exactly how long a request is in flight.
	Hold <-chan struct{}
	// Body, when set, replaces the body entirely (HTML, garbage, huge).
	Body []byte
	// ContentType goes with Body; default text/html.
	ContentType string
	// Drop closes the connection without an answer.
	Drop bool
	// ExpiresIn, when set, is the raw JSON value of expires_in in an
	// otherwise normal token answer ("\"3600\"", "0", "-5", "1e12").
	ExpiresIn string
	// OmitExpiresIn leaves expires_in out of a normal token answer.
	OmitExpiresIn bool
	// Opaque issues a random non-JWT access token.
	Opaque bool
	// TokenPadding adds a claim of this many bytes to issued JWTs, for
	// IdPs that issue large tokens (Entra with many group claims).
	TokenPadding int
}

// Server is the in-process IdP. Create it with New; Close it when done.
type Server struct {
	// URL is the issuer, e.g. http://127.0.0.1:PORT.
	URL string
	// TokenURL is the token endpoint.
	TokenURL string

	ts  *httptest.Server
	key *rsa.PrivateKey
	kid string

	mu         sync.Mutex
	arrived    *sync.Cond // signalled when a token request arrives
	now        func() time.Time
	ttl        time.Duration
	clients    map[string]*Client
	fault      *Fault
	hits       map[string]int
	total      int
	lastForm   map[string]url.Values
	jtis       map[string]time.Time
	issued     []string
	assertions []string
}

// signingKey is the one RSA key of every Server in a process: generating
// an RSA-2048 key costs tens of milliseconds of CPU, which made key
// generation a large share of the agent tests' time. Servers stay apart by
// their issuer URL, and each token by its random jti.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("idptest: generate key: " + err.Error()) // crypto/rand failing is not recoverable
	}
	return key
})

// New starts a server with a 1-hour token TTL and no clients. Every
// Server of a process signs with the same key.
func New() *Server {
	key := signingKey()
	s := &Server{
		key:      key,
		kid:      "idptest-1",
		now:      time.Now,
		ttl:      time.Hour,
		clients:  map[string]*Client{},
		hits:     map[string]int{},
		lastForm: map[string]url.Values{},
		jtis:     map[string]time.Time{},
	}
	s.arrived = sync.NewCond(&s.mu)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.serveToken)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.serveDiscovery)
	mux.HandleFunc("GET /jwks", s.serveJWKS)
	s.ts = httptest.NewServer(mux)
	s.URL = s.ts.URL
	s.TokenURL = s.ts.URL + "/token"
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.ts.Close() }

// AddClient registers c, replacing any client with the same ID.
func (s *Server) AddClient(c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = &c
}

// SetTTL sets the lifetime of tokens issued from now on.
func (s *Server) SetTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = d
}

// SetClock makes the server read time from now (for exp, iat and assertion
// checks), so it can share a test's fake clock.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetFault makes every later token request answer as f says.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = &f
}

// ClearFault restores normal answers.
func (s *Server) ClearFault() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = nil
}

// Requests is how many token requests named clientID (authenticated or
// not, faulted or not).
func (s *Server) Requests(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[clientID]
}

// TotalRequests is how many token requests arrived.
func (s *Server) TotalRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// WaitRequests blocks until at least n token requests have arrived.
func (s *Server) WaitRequests(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.total < n {
		s.arrived.Wait()
	}
}

// LastForm is the form of the last request from clientID, for asserting
// what was sent. It includes client_secret for client_secret_post.
func (s *Server) LastForm(clientID string) url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastForm[clientID]
}

// Issued lists every access token and client assertion the server has
// seen or made, so tests can check none of them leaked into logs.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Concat(s.issued, s.assertions)
}

// PublicKey verifies the server's access tokens.
func (s *Server) PublicKey() *rsa.PublicKey { return &s.key.PublicKey }

type tokenError struct {
	status      int
	code, descr string
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeError(w, tokenError{http.StatusBadRequest, "invalid_request", "unreadable form"})
		return
	}
	s.mu.Lock()
	clientID := requestClientID(r)
	s.hits[clientID]++
	s.total++
	s.lastForm[clientID] = r.PostForm
	s.arrived.Broadcast()
	for _, a := range []string{r.PostForm.Get("client_assertion"), r.PostForm.Get("assertion")} {
		if a != "" {
			s.assertions = append(s.assertions, a)
		}
	}
	fault := s.fault
	s.mu.Unlock()

	if fault != nil && s.applyFault(w, r, fault) {
		return
	}
	if r.PostForm.Get("grant_type") == GrantJWTBearer {
		client, scope, terr := s.verifyGrant(r.PostForm.Get("assertion"))
		if terr == nil {
			terr = s.checkScope(client, scope)
		}
		if terr != nil {
			writeError(w, *terr)
			return
		}
		s.issue(w, r, client, scope, fault)
		return
	}
	client, terr := s.authenticate(r)
	if terr != nil {
		writeError(w, *terr)
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeError(w, tokenError{http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported", gt)})
		return
	}
	scope := r.PostForm.Get("scope")
	if terr := s.checkScope(client, scope); terr != nil {
		writeError(w, *terr)
		return
	}
	s.issue(w, r, client, scope, fault)
}

// checkScope refuses a scope beyond the client's Scopes, when it has any.
func (s *Server) checkScope(c *Client, scope string) *tokenError {
	if len(c.Scopes) == 0 {
		return nil
	}
	for _, sc := range strings.Fields(scope) {
		if !slices.Contains(c.Scopes, sc) {
			return &tokenError{http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not allowed for this client", sc)}
		}
	}
	return nil
}

// applyFault answers per f; it reports false when the request should carry
// on normally (ExpiresIn/Opaque variations).
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if f.Hold != nil {
		select {
		case <-f.Hold:
		case <-r.Context().Done():
			return true
		}
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		}
	}
	if f.Drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without an answer
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	switch {
	case f.Body != nil:
		ct := f.ContentType
		if ct == "" {
			ct = "text/html"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(cmp.Or(f.Status, http.StatusOK))
		w.Write(f.Body)
		return true
	case f.Error != "":
		descr := f.Description
		if f.Echo {
			descr += fmt.Sprintf(" (assertion %s; request %s)", r.PostForm.Get("client_assertion"), r.PostForm.Encode())
		}
		writeError(w, tokenError{cmp.Or(f.Status, http.StatusBadRequest), f.Error, descr})
		return true
	case f.Status != 0:
		w.WriteHeader(f.Status)
		return true
	}
	return false
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request, c *Client, scope string, f *Fault) {
	s.mu.Lock()
	now, ttl := s.now(), s.ttl
	s.mu.Unlock()

	var access string
	if f != nil && f.Opaque {
		var b [24]byte
		rand.Read(b[:])
		access = hex.EncodeToString(b[:])
	} else {
		aud := r.PostForm["resource"]
		if a := r.PostForm.Get("audience"); a != "" {
			aud = append(aud, a)
		}
		if len(aud) == 0 {
			aud = []string{s.URL}
		}
		var jti [16]byte
		rand.Read(jti[:])
		claims := jwt.MapClaims{
			"iss":       s.URL,
			"sub":       c.ID,
			"client_id": c.ID,
			"aud":       aud,
			"iat":       now.Unix(),
			"exp":       now.Add(ttl).Unix(),
			"jti":       hex.EncodeToString(jti[:]),
		}
		if scope != "" {
			claims["scope"] = scope
		}
		if f != nil && f.TokenPadding > 0 {
			claims["pad"] = strings.Repeat("p", f.TokenPadding)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = s.kid
		tok.Header["typ"] = "at+jwt"
		var err error
		if access, err = tok.SignedString(s.key); err != nil {
			writeError(w, tokenError{http.StatusInternalServerError, "server_error", "signing failed"})
			return
		}
	}
	s.mu.Lock()
	s.issued = append(s.issued, access)
	s.mu.Unlock()

	body := map[string]any{"access_token": access, "token_type": "Bearer"}
	if scope != "" {
		body["scope"] = scope
	}
	switch {
	case f != nil && f.OmitExpiresIn:
	case f != nil && f.ExpiresIn != "":
		body["expires_in"] = json.RawMessage(f.ExpiresIn)
	default:
		body["expires_in"] = int64(ttl / time.Second)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(body)
}

func writeError(w http.ResponseWriter, e tokenError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{"error": e.code, "error_description": e.descr})
}

func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                s.URL,
		"token_endpoint":                        s.TokenURL,
		"jwks_uri":                              s.URL + "/jwks",
		"grant_types_supported":                 []string{"client_credentials", GrantJWTBearer},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "PS256", "ES256"},
	})
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	pub := s.key.PublicKey
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": s.kid,
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// ErrNotIssued is returned by VerifyToken for a token the server did not issue.
var ErrNotIssued = errors.New("idptest: token not issued by this server")

// clock reads the server's current time.
func (s *Server) clock() time.Time {
	s.mu.Lock()
	now := s.now
	s.mu.Unlock()
	return now()
}

// VerifyToken checks an access token's signature and returns its claims.
func (s *Server) VerifyToken(token string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return &s.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(s.clock))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotIssued, err)
	}
	return claims, nil
}
