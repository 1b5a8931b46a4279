// Package clientlib gets OAuth 2.0 access tokens from the local tokenagent
// over its Unix socket. The zero Client works: it finds the socket from
// $TOKENAGENT_SOCKET or the default path.
//
//	var c clientlib.Client
//	defer c.Close()
//	tok, err := c.Token(ctx, "zeebe")
//
// Package clientlib/bearer adapts a Client to net/http (a RoundTripper that
// adds the bearer header and retries once after a 401) and to
// golang.org/x/oauth2 (a TokenSource). This package itself links neither
// net/http nor anything of the agent: it speaks the little HTTP/1.1 the
// socket needs, so that a program that only wants a token — the tokenagent
// CLI among them — starts as fast as Go allows.
//
// The package has no global state and never logs. Every failure the
// agent reports is an *Error whose Kind is one of the sentinel errors
// (ErrAgentUnavailable, ErrUnknownProfile, ErrIdPRefused, …): test them
// with errors.Is and read Code, Description and RetryAfter with
// errors.As. The sentinels are package ipc's values, so errors.Is gives
// the same answer for the agent's engine in process; the result types
// (Token, Health, ProfileStatus, Error) are this package's own.
package clientlib

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// Token is an access token from the agent.
type Token struct {
	AccessToken string
	TokenType   string
	Scope       string
	ExpiresAt   time.Time
}

// Client talks to one agent. The zero value is ready to use; a Client is
// safe for concurrent use, keeps up to a few connections open for reuse,
// and releases them on Close.
type Client struct {
	// Socket is the agent's socket; "" means $TOKENAGENT_SOCKET, then the
	// default: for root /run/tokenagent/agent.sock; for other users
	// $XDG_RUNTIME_DIR/tokenagent/agent.sock if that exists, else the
	// system agent's /run/tokenagent/agent.sock.
	Socket string
	// AgentUIDs are uids besides root, this process's user and the system
	// agent's user (tokenagent) that may serve this client: the client
	// checks who is at the other end of the socket before asking anything.
	// $TOKENAGENT_AGENT_UID adds more.
	AgentUIDs []int
	// Reuse, when positive, lets the client hand out a token it got from
	// the agent for up to this long without asking again, while the token
	// has at least a minute more than the caller's minimum left. Zero (the
	// default) asks the agent every time: the agent stays the one place
	// that decides refreshes, and a request costs one socket round trip.
	Reuse time.Duration
	// Timeout, when positive, bounds every call whose context has no
	// earlier deadline, and the calls of package bearer's TokenSource,
	// whose oauth2 interface passes no context. Zero: calls wait as long
	// as their context lets them (the agent answers within its own
	// limits), and bearer's TokenSource waits up to 30 s.
	Timeout time.Duration

	once   sync.Once
	socket string
	pool   pool

	mu    sync.Mutex
	cache map[string]cachedToken
}

type cachedToken struct {
	tok     Token
	fetched time.Time
}

// reuseMargin is how much more than the caller's minimum a reused token
// must have left.
const reuseMargin = time.Minute

func (c *Client) init() {
	c.once.Do(func() {
		c.socket = ipc.ClientSocketPath(c.Socket)
		c.pool.socket = c.socket
		c.pool.check = c.checkServer
	})
}

// SocketPath is the socket the client uses.
func (c *Client) SocketPath() string {
	c.init()
	return c.socket
}

// Close closes the connections the client keeps open. The client remains
// usable; it opens new connections as needed.
func (c *Client) Close() error {
	c.init()
	c.pool.closeIdle()
	return nil
}

// TokenOption adjusts a Token request.
type TokenOption func(*TokenOptions)

// TokenOptions are what a Token request asks for, as its TokenOptions
// set them; adapters such as package bearer read them.
type TokenOptions struct {
	// MinValid is how long the token must stay valid, at least, from when
	// the agent answers; zero means the profile's own min_valid, which
	// also applies when it is longer.
	MinValid time.Duration
}

// WithMinValid asks for a token valid for at least d more (the agent's
// own min_valid applies when it is longer).
func WithMinValid(d time.Duration) TokenOption {
	return func(o *TokenOptions) { o.MinValid = d }
}

// Token returns a token for profile. Each call returns a copy the caller
// may keep or change.
func (c *Client) Token(ctx context.Context, profile string, opts ...TokenOption) (*Token, error) {
	var o TokenOptions
	for _, opt := range opts {
		opt(&o)
	}
	if tok, ok := c.reusable(profile, o.MinValid); ok {
		return &tok, nil
	}
	path := ipc.PathTokens + url.PathEscape(profile)
	if o.MinValid > 0 {
		path += "?min_valid=" + url.QueryEscape(o.MinValid.String())
	}
	return c.tokenRequest(ctx, "GET", profile, path, nil)
}

// ReportRejected tells the agent that an API rejected the token rejected
// (only its SHA-256 is sent) and returns the profile's current token: a
// new one when rejected was the current token, the current one without
// a new IdP request when the agent has already moved on. The agent keeps
// a still-valid token until its replacement arrives, and limits how
// often a profile's token may be replaced this way, so the answer may be
// rejected itself: compare before retrying.
func (c *Client) ReportRejected(ctx context.Context, profile, rejected string) (*Token, error) {
	c.forget(profile)
	var body []byte
	if rejected != "" {
		body, _ = json.Marshal(ipc.RefreshRequest{RejectedSHA256: ipc.TokenSHA256(rejected)})
	}
	return c.tokenRequest(ctx, "POST", profile, ipc.PathTokens+url.PathEscape(profile)+"/refresh", body)
}

// Profiles lists the profiles this process's user may use.
func (c *Client) Profiles(ctx context.Context) ([]ProfileStatus, error) {
	var out struct {
		Profiles []ProfileStatus `json:"profiles"`
	}
	if err := c.do(ctx, "GET", ipc.PathProfiles, nil, &out); err != nil {
		return nil, err
	}
	return out.Profiles, nil
}

// TokenEndpoint is the URL of the agent's loopback OAuth 2.0 token
// endpoint, or "" when it serves none.
func (c *Client) TokenEndpoint(ctx context.Context) (string, error) {
	h, err := c.Health(ctx)
	return h.TokenEndpoint, err
}

// Health asks the agent how it is: its token endpoint and its store.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.do(ctx, "GET", ipc.PathHealth, nil, &h)
	return h, err
}

func (c *Client) tokenRequest(ctx context.Context, method, profile, path string, body []byte) (*Token, error) {
	var tr ipc.TokenResponse
	if err := c.do(ctx, method, path, body, &tr); err != nil {
		return nil, err
	}
	if !ipc.ValidToken(tr.AccessToken) {
		return nil, fmt.Errorf("clientlib: the agent at %s answered without a usable access token", c.socket)
	}
	tok := Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType, Scope: tr.Scope, ExpiresAt: tr.ExpiresAt}
	c.remember(profile, tok)
	return &tok, nil
}

// do sends a request and decodes a 200 into out, or turns the answer into
// an *Error whose Kind is the sentinel the status and code stand for.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	c.init()
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	resp, err := c.pool.roundTrip(ctx, method, path, body)
	if err != nil {
		var refused *Error
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("clientlib: %w", ctx.Err())
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The connection's deadline is the context's, and may pass a
			// moment before the context says so.
			return fmt.Errorf("clientlib: no answer from the agent at %s before the deadline: %w", c.socket, context.DeadlineExceeded)
		case errors.As(err, &refused): // the server is not one to trust
			return fmt.Errorf("clientlib: %w", err)
		case errors.Is(err, fs.ErrPermission): // an agent is there, but not for this user
			return fmt.Errorf("clientlib: %w", &Error{Kind: ErrForbidden, Description: permissionHint(c.socket)})
		}
		return fmt.Errorf("clientlib: %w", &Error{Kind: ErrAgentUnavailable,
			Description: fmt.Sprintf("nothing answers at %s (%v); start it with `tokenagentd` (or its service), or point TOKENAGENT_SOCKET at its socket", c.socket, err)})
	}
	if resp.status == 200 {
		var err error
		if tr, ok := out.(*ipc.TokenResponse); ok {
			*tr, err = decodeToken(resp.body)
		} else {
			err = json.Unmarshal(resp.body, out)
		}
		if err != nil {
			return fmt.Errorf("clientlib: unreadable answer from the agent at %s: %w", c.socket, err)
		}
		return nil
	}
	var er ipc.ErrorResponse
	json.Unmarshal(resp.body, &er)
	kind := kindOf(resp.status, er.Error)
	return fmt.Errorf("clientlib: %w", &Error{Kind: kind, Code: cmp.Or(er.Error, ipc.CodeOf(kind)),
		Description: er.ErrorDescription, RetryAfter: resp.retryAfter})
}

// permissionHint says why connecting to socket was refused and what to
// do: the socket's mode and group decide who may connect.
func permissionHint(socket string) string {
	fi, err := os.Stat(socket)
	if err != nil {
		return fmt.Sprintf("permission denied on %s (%v): your user may not reach the agent's socket; check the modes of its directories", socket, err)
	}
	group := "its group"
	if gid, ok := fileGID(fi); ok {
		group = fmt.Sprintf("group %d", gid)
		if name, ok := lookupGroup(gid); ok {
			group = "group " + name
		}
	}
	return fmt.Sprintf("permission denied on %s (mode %04o, %s): your user may not use this agent. "+
		"Ask for your user to be added to %s (then log in again), or have the agent's socket_mode changed", socket, fi.Mode().Perm(), group, group)
}

// kindOf maps an answer back to the sentinel the server mapped to it: by
// the agent's own code, else by status (the IdP's codes come with 502).
func kindOf(status int, code string) error {
	if kind := ipc.KindOf(code); kind != nil && kind != ErrIdPRefused {
		return kind
	}
	switch status {
	case 502:
		return ErrIdPRefused
	case 503:
		return ErrIdPUnavailable
	case 504:
		return ErrTimeout
	case 404, 405:
		return ErrNotFound
	case 400, 431:
		return ErrBadRequest
	case 403:
		return ErrForbidden
	}
	return nil
}

func (c *Client) reusable(profile string, minValid time.Duration) (Token, bool) {
	if c.Reuse <= 0 {
		return Token{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ct, ok := c.cache[profile]
	now := time.Now()
	if !ok || now.Sub(ct.fetched) > c.Reuse || ct.tok.ExpiresAt.Sub(now) < minValid+reuseMargin {
		return Token{}, false
	}
	return ct.tok, true
}

func (c *Client) remember(profile string, tok Token) {
	if c.Reuse <= 0 {
		return
	}
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
