// Package bearer connects a clientlib.Client to Go's HTTP clients: a
// RoundTripper that sends each request with the agent's token for a
// profile (and after a 401 reports the token and retries once with a new
// one), and an oauth2.TokenSource for libraries that take one. It is apart
// from clientlib so that programs that only want a token do not link
// net/http.
package bearer

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/tokenagent/tokenagent/clientlib"
	"golang.org/x/oauth2"
)

// DefaultMinValid is how long a token must stay valid, at least, when it
// reaches the API, unless the caller passes clientlib.WithMinValid: the
// agent's own default min_valid. A profile configured with a longer
// min_valid wants WithMinValid of that.
const DefaultMinValid = 30 * time.Second

// DefaultTimeout bounds each request to the agent of a TokenSource whose
// Client sets no Timeout (oauth2.TokenSource has no context to bound it).
const DefaultTimeout = 30 * time.Second

// transit is what bearer asks the agent for beyond the min_valid it
// promises the API: the agent counts min_valid when it answers, and the
// token still has to reach the API.
const transit = time.Second

// minValid is the validity promised to the API for opts.
func minValid(opts []clientlib.TokenOption) time.Duration {
	var o clientlib.TokenOptions
	for _, opt := range opts {
		opt(&o)
	}
	return cmp.Or(o.MinValid, DefaultMinValid)
}

// TokenSource returns c's tokens for profile as an oauth2.TokenSource, for
// oauth2.NewClient and libraries that take one. Each Token call asks the
// agent, waiting up to c.Timeout (DefaultTimeout when zero).
//
// oauth2.NewClient wraps the source in oauth2.ReuseTokenSource, which
// keeps a token until 10 s before its Expiry. So the Expiry of the tokens
// this source returns is the agent's expiry less the min_valid asked for
// (clientlib.WithMinValid, DefaultMinValid when none): a reused token
// always has more than min_valid left when it reaches the API, as a token
// from the agent does. Read the real expiry from clientlib.Client.Token.
func TokenSource(c *clientlib.Client, profile string, opts ...clientlib.TokenOption) oauth2.TokenSource {
	return tokenSource{c, profile, minValid(opts)}
}

type tokenSource struct {
	c        *clientlib.Client
	profile  string
	minValid time.Duration
}

func (s tokenSource) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(s.c.Timeout, DefaultTimeout))
	defer cancel()
	tok, err := s.c.Token(ctx, s.profile, clientlib.WithMinValid(s.minValid+transit))
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.ExpiresAt.Add(-s.minValid)}, nil
}

// Transport returns a RoundTripper that sends each request through base
// (http.DefaultTransport when nil) with "Authorization: Bearer <token>",
// the token being c's for profile, asked of the agent for each request
// and valid for at least the min_valid of opts (DefaultMinValid when
// none) when it reaches the API. When the server answers 401, it reports
// the token as rejected (clientlib.Client.ReportRejected) and retries
// once with the new token — only for requests whose body can be sent
// again (no body, or GetBody set, as http.NewRequest does for in-memory
// bodies).
func Transport(c *clientlib.Client, profile string, base http.RoundTripper, opts ...clientlib.TokenOption) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{c: c, profile: profile, base: base, minValid: minValid(opts)}
}

type transport struct {
	c        *clientlib.Client
	profile  string
	base     http.RoundTripper
	minValid time.Duration
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if redirectedElsewhere(req) {
		// The token is for the origin the caller asked; a redirect to
		// another one gets the request without it (and without any
		// Authorization the caller set), as net/http itself does.
		r := req.Clone(req.Context())
		r.Header.Del("Authorization")
		return t.base.RoundTrip(r)
	}
	tok, err := t.c.Token(req.Context(), t.profile, clientlib.WithMinValid(t.minValid+transit))
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.base.RoundTrip(withBearer(req, tok.AccessToken))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !replayable {
		return resp, nil
	}
	fresh, err := t.c.ReportRejected(req.Context(), t.profile, tok.AccessToken)
	if err != nil || fresh.AccessToken == tok.AccessToken {
		return resp, nil // nothing better to offer: let the caller see the 401
	}
	retry := withBearer(req, fresh.AccessToken)
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		retry.Body = body
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return t.base.RoundTrip(retry)
}

// redirectedElsewhere reports whether req follows a redirect from a
// request to another origin (scheme, host and port): http.Client sets
// req.Response on the requests it makes for redirects.
func redirectedElsewhere(req *http.Request) bool {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	return first != req && origin(first.URL) != origin(req.URL)
}

func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + u.Hostname() + ":" + port
}

// withBearer clones req with the Authorization header set (RoundTrippers
// must not modify the caller's request).
func withBearer(req *http.Request, token string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
