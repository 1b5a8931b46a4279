// Package clientlib gets OAuth 2.0 access tokens from the local tokenagent
// over its Unix socket. The zero Client works: it finds the socket from
// $TOKENAGENT_SOCKET or the default path.
//
//	tok, err := new(clientlib.Client).Token(ctx, "zeebe")
//
// TokenSource adapts a profile to golang.org/x/oauth2, and Transport adds
// the bearer header to an http.Client's requests, reporting a token an API
// rejects and retrying once with a fresh one.
//
// The package has no global state and never logs. Errors can be tested
// with errors.Is against ErrAgentUnavailable, ErrUnknownProfile and
// ErrForbidden, and with errors.As against *IdPError and *Error.
package clientlib

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// Errors callers branch on.
var (
	// ErrAgentUnavailable: nothing answers on the socket.
	ErrAgentUnavailable = errors.New("clientlib: agent not reachable")
	// ErrUnknownProfile: the agent has no such profile.
	ErrUnknownProfile = errors.New("clientlib: unknown profile")
	// ErrForbidden: this process's user may not use the profile.
	ErrForbidden = errors.New("clientlib: forbidden")
)

// IdPError is the identity provider refusing (Status 502, Code is its RFC
// 6749 error code such as "invalid_client") or being unreachable with no
// valid token held (Status 503, Code "idp_unavailable").
type IdPError struct {
	Status      int
	Code        string
	Description string
	// RetryAfter is when the agent will ask the IdP again, if it said.
	RetryAfter time.Duration
}

func (e *IdPError) Error() string {
	return fmt.Sprintf("clientlib: identity provider: %s: %s", e.Code, e.Description)
}

// Error is any other failed request (a bad min_valid, a timeout, …).
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string {
	return fmt.Sprintf("clientlib: agent answered %d %s: %s", e.Status, e.Code, e.Description)
}

// Token is an access token from the agent.
type Token struct {
	AccessToken string
	TokenType   string
	Scope       string
	ExpiresAt   time.Time
}

// Client talks to one agent. The zero value is ready to use; a Client is
// safe for concurrent use and keeps its connections alive.
type Client struct {
	// Socket is the agent's socket; "" means $TOKENAGENT_SOCKET, then the
	// default: for root /run/tokenagent/agent.sock; for other users
	// $XDG_RUNTIME_DIR/tokenagent/agent.sock if that exists, else the
	// system agent's /run/tokenagent/agent.sock.
	Socket string

	once   sync.Once
	http   *http.Client
	socket string

	mu    sync.Mutex
	cache map[string]cachedToken
}

type cachedToken struct {
	tok     *Token
	fetched time.Time
}

// Reuse policy: a token from the agent is reused in-process for up to
// reuseFor, and only while it has reuseMargin more than the caller's
// minimum left; the agent stays the one place that decides refreshes.
const (
	reuseFor    = 30 * time.Second
	reuseMargin = time.Minute
)

func (c *Client) init() {
	c.once.Do(func() {
		c.socket = ipc.ClientSocketPath(c.Socket)
		socket := c.socket
		c.http = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socket)
			},
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}}
	})
}

// SocketPath is the socket the client uses.
func (c *Client) SocketPath() string {
	c.init()
	return c.socket
}

// TokenOption adjusts a Token request.
type TokenOption func(*tokenOptions)

type tokenOptions struct{ minValid time.Duration }

// WithMinValid asks for a token valid for at least d more (the agent's
// own min_valid applies when it is longer).
func WithMinValid(d time.Duration) TokenOption {
	return func(o *tokenOptions) { o.minValid = d }
}

// Token returns a token for profile.
func (c *Client) Token(ctx context.Context, profile string, opts ...TokenOption) (*Token, error) {
	var o tokenOptions
	for _, opt := range opts {
		opt(&o)
	}
	if tok := c.reusable(profile, o.minValid); tok != nil {
		return tok, nil
	}
	path := ipc.PathTokens + url.PathEscape(profile)
	if o.minValid > 0 {
		path += "?min_valid=" + url.QueryEscape(o.minValid.String())
	}
	tok, err := c.tokenRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	c.remember(profile, tok)
	return tok, nil
}

// Refresh tells the agent that an API rejected rejected (the token itself;
// only its SHA-256 is sent) and returns the current token: a new one if
// rejected was current, without a new IdP request otherwise.
func (c *Client) Refresh(ctx context.Context, profile, rejected string) (*Token, error) {
	c.forget(profile)
	var body io.Reader
	if rejected != "" {
		sum := sha256.Sum256([]byte(rejected))
		data, _ := json.Marshal(ipc.RefreshRequest{RejectedSHA256: hex.EncodeToString(sum[:])})
		body = bytes.NewReader(data)
	}
	tok, err := c.tokenRequest(ctx, http.MethodPost, ipc.PathTokens+url.PathEscape(profile)+"/refresh", body)
	if err != nil {
		return nil, err
	}
	c.remember(profile, tok)
	return tok, nil
}

// Profiles lists the profiles this process's user may use.
func (c *Client) Profiles(ctx context.Context) ([]ipc.ProfileInfo, error) {
	var out ipc.ProfilesResponse
	if err := c.do(ctx, http.MethodGet, ipc.PathProfiles, nil, &out); err != nil {
		return nil, err
	}
	return out.Profiles, nil
}

func (c *Client) tokenRequest(ctx context.Context, method, path string, body io.Reader) (*Token, error) {
	var tr ipc.TokenResponse
	if err := c.do(ctx, method, path, body, &tr); err != nil {
		return nil, err
	}
	return &Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType, Scope: tr.Scope, ExpiresAt: tr.ExpiresAt}, nil
}

// do sends a request and decodes a 200 into out, or turns the answer into
// one of the package's errors.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	c.init()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+ipc.Host+path, body)
	if err != nil {
		return fmt.Errorf("clientlib: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("clientlib: %w", ctx.Err())
		}
		return fmt.Errorf("%w at %s (%v); start it with `tokenagent run` (or its service), or point TOKENAGENT_SOCKET at its socket",
			ErrAgentUnavailable, c.socket, unwrapOpError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w at %s: reading answer: %v", ErrAgentUnavailable, c.socket, err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("clientlib: unreadable answer from the agent: %w", err)
		}
		return nil
	}
	var er ipc.ErrorResponse
	json.Unmarshal(data, &er)
	switch resp.StatusCode {
	case http.StatusNotFound:
		if er.Error == ipc.CodeUnknownProfile {
			return fmt.Errorf("%w: %s", ErrUnknownProfile, er.ErrorDescription)
		}
	case http.StatusForbidden:
		return fmt.Errorf("%w: %s", ErrForbidden, er.ErrorDescription)
	case http.StatusBadGateway:
		return &IdPError{Status: resp.StatusCode, Code: er.Error, Description: er.ErrorDescription}
	case http.StatusServiceUnavailable:
		switch er.Error {
		case ipc.CodeIdPUnavailable:
			secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			return &IdPError{Status: resp.StatusCode, Code: er.Error, Description: er.ErrorDescription, RetryAfter: time.Duration(secs) * time.Second}
		case ipc.CodeShuttingDown, ipc.CodeOverloaded:
			return fmt.Errorf("%w at %s: %s", ErrAgentUnavailable, c.socket, er.ErrorDescription)
		}
	}
	if er.Error == "" {
		er.Error = http.StatusText(resp.StatusCode)
	}
	return &Error{Status: resp.StatusCode, Code: er.Error, Description: er.ErrorDescription}
}

func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

func (c *Client) reusable(profile string, minValid time.Duration) *Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct, ok := c.cache[profile]
	now := time.Now()
	if !ok || now.Sub(ct.fetched) > reuseFor || ct.tok.ExpiresAt.Sub(now) < minValid+reuseMargin {
		return nil
	}
	return ct.tok
}

func (c *Client) remember(profile string, tok *Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = map[string]cachedToken{}
	}
	c.cache[profile] = cachedToken{tok: tok, fetched: time.Now()}
}

func (c *Client) forget(profile string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cache, profile)
}
