// Package demoidp is the small identity provider behind `tokenagentd
// --dev`: one OAuth 2.0 client-credentials client on a loopback port,
// authenticated with client_secret_basic (RFC 6749 §2.3.1 decoding), that
// issues short-lived RS256 JWT access tokens so that background refresh
// shows in the log. It is part of the production binary, so it is small
// and uses nothing of the test fixtures; tests use agent/idptest.
package demoidp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Server is a running demo IdP.
type Server struct {
	// TokenURL is the token endpoint.
	TokenURL string
	// ClientID and ClientSecret are the one client's credentials (the
	// secret is random per start).
	ClientID, ClientSecret string
	// TTL is the lifetime of issued tokens.
	TTL time.Duration

	key  *rsa.PrivateKey
	http *http.Server
}

// Start listens on a free loopback port and serves until Close.
func Start(clientID string, ttl time.Duration) (*Server, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("demoidp: %w", err)
	}
	var b [18]byte
	rand.Read(b[:])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demoidp: %w", err)
	}
	s := &Server{
		TokenURL:     "http://" + ln.Addr().String() + "/token",
		ClientID:     clientID,
		ClientSecret: hex.EncodeToString(b[:]),
		TTL:          ttl,
		key:          key,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.serveToken)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.http.Serve(ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.http.Close() }

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	if err := s.authenticate(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="demo"`)
		writeError(w, http.StatusUnauthorized, "invalid_client", err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}
	now := time.Now()
	var jti [16]byte
	rand.Read(jti[:])
	claims := jwt.MapClaims{
		"iss":       s.TokenURL,
		"sub":       s.ClientID,
		"client_id": s.ClientID,
		"aud":       "demo",
		"iat":       now.Unix(),
		"exp":       now.Add(s.TTL).Unix(),
		"jti":       hex.EncodeToString(jti[:]),
	}
	scope := r.PostForm.Get("scope")
	if scope != "" {
		claims["scope"] = scope
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["typ"] = "at+jwt"
	access, err := tok.SignedString(s.key)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	body := map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": int64(s.TTL / time.Second)}
	if scope != "" {
		body["scope"] = scope
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(body)
}

// authenticate checks client_secret_basic: both parts form-urlencoded
// before Base64 (RFC 6749 §2.3.1), compared in constant time.
func (s *Server) authenticate(r *http.Request) error {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return errors.New("client authentication failed: use HTTP Basic (client_secret_basic)")
	}
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	if err1 != nil || err2 != nil ||
		subtle.ConstantTimeCompare([]byte(id), []byte(s.ClientID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.ClientSecret)) != 1 {
		return errors.New("client authentication failed")
	}
	return nil
}

func writeError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}
