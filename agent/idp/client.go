// Package idp talks to OAuth 2.0 token endpoints for the client-credentials
// grant (RFC 6749 §4.4): it authenticates the client (client_secret_basic,
// client_secret_post, private_key_jwt, and client_assertion: a platform's
// token from a file it keeps fresh), sends scope, audience, resource and
// extra parameters, discovers the token endpoint from an issuer, and turns
// every answer into either a [Response] or an [*Error] that says whether
// retrying can help.
//
// The package holds no tokens and makes no policy: caching, refresh timing
// and backoff belong to package agent. It never logs; its errors never
// contain a secret, an assertion or a token.
package idp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/tokenagent/tokenagent/agent/idp/spec"
	"github.com/tokenagent/tokenagent/ipc"
)

// Client authentication methods (RFC 8414 token_endpoint_auth_methods).
const (
	AuthClientSecretBasic = spec.AuthClientSecretBasic
	AuthClientSecretPost  = spec.AuthClientSecretPost
	AuthPrivateKeyJWT     = spec.AuthPrivateKeyJWT
	// AuthJWTBearer is the RFC 7523 JWT-bearer grant of a service account
	// (Config.Signer signs it; ClientID is the account's email).
	AuthJWTBearer = spec.AuthJWTBearer
	// AuthClientAssertion sends the platform's token that
	// Config.Assertion holds as the client assertion.
	AuthClientAssertion = spec.AuthClientAssertion
)

// MaxResponseBytes caps what is read from a token or discovery endpoint.
const MaxResponseBytes = 1 << 20

// Config describes one OAuth client at one authorization server.
type Config struct {
	// TokenURL is the token endpoint. When empty, Issuer is used to discover it.
	TokenURL string
	// Issuer is the authorization server's issuer identifier, used for
	// OpenID Connect / RFC 8414 discovery when TokenURL is empty.
	Issuer string
	// ClientID identifies the client.
	ClientID string
	// ClientSecret is the secret for client_secret_basic and client_secret_post.
	ClientSecret string
	// AuthMethod is one of the Auth* constants; empty means client_secret_basic.
	AuthMethod string
	// Signer signs client assertions; required for private_key_jwt and
	// jwt_bearer.
	Signer *Signer
	// Assertion is the file a platform keeps the client assertion in;
	// required for client_assertion.
	Assertion AssertionFile
	// Scopes are sent space-separated as "scope".
	Scopes []string
	// Audience is sent as "audience" (Auth0, Camunda/Zeebe).
	Audience string
	// Resource values are each sent as "resource" (RFC 8707).
	Resource []string
	// Params are extra form parameters.
	Params map[string]string
	// HTTPClient sends the requests; nil means a client that never follows
	// redirects (a secret must not follow a redirect to another host).
	HTTPClient *http.Client
	// Now is the clock for assertion timestamps and Retry-After dates; nil
	// means time.Now.
	Now func() time.Time
}

// Response is a successful token response.
type Response struct {
	AccessToken string
	TokenType   string
	Scope       string
	// ExpiresIn is the lifetime the IdP stated; 0 when it stated none, or a
	// value that is not a positive number of seconds. Numeric strings
	// ("3599", as some older servers send) are accepted.
	ExpiresIn time.Duration
}

// Client fetches tokens for one Config. It is safe for concurrent use.
type Client struct {
	cfg  Config
	http *http.Client
	now  func() time.Time

	platform *platformAssertion // client_assertion's; nil for the others

	mu       sync.Mutex
	tokenURL string // discovered or configured
}

// New checks cfg and returns a Client. It does no network I/O: discovery
// happens on the first Fetch and is then cached.
func New(cfg Config) (*Client, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("idp: client_id is empty")
	}
	if cfg.TokenURL == "" && cfg.Issuer == "" {
		return nil, errors.New("idp: neither token_url nor issuer is set")
	}
	if cfg.AuthMethod == "" {
		cfg.AuthMethod = AuthClientSecretBasic
	}
	switch cfg.AuthMethod {
	case AuthClientSecretBasic, AuthClientSecretPost:
		if cfg.ClientSecret == "" {
			return nil, fmt.Errorf("idp: %s needs a client secret", cfg.AuthMethod)
		}
	case AuthPrivateKeyJWT, AuthJWTBearer:
		if cfg.Signer == nil {
			return nil, fmt.Errorf("idp: %s needs a private key", cfg.AuthMethod)
		}
	case AuthClientAssertion:
		if cfg.Assertion == nil {
			return nil, errors.New("idp: client_assertion needs the file the platform keeps its token in")
		}
	default:
		return nil, fmt.Errorf("idp: unknown auth method %q", cfg.AuthMethod)
	}
	for k := range cfg.Params {
		if ReservedParam(k) {
			return nil, fmt.Errorf("idp: extra parameter %q is set by the client itself; use the dedicated setting", k)
		}
	}
	c := &Client{cfg: cfg, http: cfg.HTTPClient, now: cfg.Now, tokenURL: cfg.TokenURL}
	if c.http == nil {
		c.http = &http.Client{CheckRedirect: noRedirects, Transport: sharedTransport()}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.Assertion != nil {
		c.platform = &platformAssertion{file: cfg.Assertion}
	}
	return c, nil
}

// ReservedParam reports whether name is a form parameter the client sets
// itself, which Config.Params may not set (the configuration's check and
// New's use this one list).
func ReservedParam(name string) bool { return spec.ReservedParam(name) }

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// sharedTransport is the one transport of every client built without an
// HTTPClient: profiles share its connection pools, as they shared
// http.DefaultTransport's before. (One transport per profile kept an idle
// connection, two goroutines and their buffers per profile: 1,000
// profiles cost 29 MiB more.)
var sharedTransport = sync.OnceValue(cleartextOnlyToLoopback)

// cleartextOnlyToLoopback is the transport of a client built without an
// HTTPClient of the caller's: https as usual, and plain http only to an
// address that is a loopback IP once resolved — checked on the address
// actually dialled, before connecting, so that a name such as
// idp.localhost that DNS points elsewhere never gets the credentials in
// clear text.
func cleartextOnlyToLoopback() http.RoundTripper {
	secure := http.DefaultTransport.(*http.Transport).Clone()
	plain := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil || !spec.IsLoopbackIP(host) {
			return fmt.Errorf("plain http reached %s, which is not a loopback address: the client credentials would cross the network in clear text; use https://", address)
		}
		return nil
	}}
	plain.DialContext = dialer.DialContext
	plain.Proxy = nil // a proxy would carry the credentials off the host
	return schemeTransport{plain: plain, secure: secure}
}

type schemeTransport struct{ plain, secure http.RoundTripper }

func (t schemeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		return t.plain.RoundTrip(req)
	}
	return t.secure.RoundTrip(req)
}

// Fetch asks the token endpoint for a new token. Cancelling ctx abandons the
// request.
func (c *Client) Fetch(ctx context.Context) (*Response, error) {
	endpoint, err := c.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if c.cfg.AuthMethod == AuthJWTBearer {
		// RFC 7523 §2.1: the signed assertion is the grant, and carries
		// the scope (as Google's token endpoint wants it); no client
		// authentication.
		assertion, err := c.cfg.Signer.GrantAssertion(c.cfg.ClientID, strings.Join(c.cfg.Scopes, " "), endpoint, c.now())
		if err != nil {
			return nil, &Error{Endpoint: endpoint, Err: err}
		}
		form = url.Values{"grant_type": {GrantJWTBearer}, "assertion": {assertion}}
	} else if len(c.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	if c.cfg.Audience != "" {
		form.Set("audience", c.cfg.Audience)
	}
	for _, r := range c.cfg.Resource {
		form.Add("resource", r)
	}
	for k, v := range c.cfg.Params {
		form.Set(k, v)
	}
	header := http.Header{
		"Content-Type": {"application/x-www-form-urlencoded"},
		"Accept":       {"application/json"},
	}
	switch c.cfg.AuthMethod {
	case AuthClientSecretBasic:
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic.
		creds := url.QueryEscape(c.cfg.ClientID) + ":" + url.QueryEscape(c.cfg.ClientSecret)
		header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))
	case AuthClientSecretPost:
		form.Set("client_id", c.cfg.ClientID)
		form.Set("client_secret", c.cfg.ClientSecret)
	case AuthPrivateKeyJWT:
		assertion, err := c.cfg.Signer.Assertion(c.cfg.ClientID, endpoint, c.now())
		if err != nil {
			return nil, &Error{Endpoint: endpoint, Err: err}
		}
		form.Set("client_id", c.cfg.ClientID)
		form.Set("client_assertion_type", ClientAssertionType)
		form.Set("client_assertion", assertion)
	case AuthClientAssertion:
		// As private_key_jwt, with client_id: Entra and Keycloak's
		// federated clients need it, the assertion's sub being the
		// platform's workload, not the client.
		assertion, err := c.platform.current(c.now())
		if err != nil {
			return nil, err
		}
		form.Set("client_id", c.cfg.ClientID)
		form.Set("client_assertion_type", ClientAssertionType)
		form.Set("client_assertion", assertion)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, &Error{Endpoint: endpoint, Err: err}
	}
	req.Header = header
	status, hdr, body, err := c.do(req)
	if err != nil {
		return nil, err
	}
	// An IdP may echo the request in its error text, which goes to logs,
	// callers and status displays: the secrets are taken out first.
	secrets := []string{c.cfg.ClientSecret, form.Get("client_assertion"), form.Get("assertion"), form.Encode()}
	for _, a := range []string{form.Get("client_assertion"), form.Get("assertion")} {
		// An echo may quote a JWT's parts alone: its claims and its
		// signature go too (its header is the same for many tokens).
		if parts := strings.Split(a, "."); len(parts) == 3 {
			secrets = append(secrets, parts[1], parts[2])
		}
	}
	if c.cfg.ClientSecret != "" { // a Basic credential, however it was sent
		for _, creds := range []string{url.QueryEscape(c.cfg.ClientID) + ":" + url.QueryEscape(c.cfg.ClientSecret), c.cfg.ClientID + ":" + c.cfg.ClientSecret} {
			secrets = append(secrets, "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))
		}
	}
	resp, err := parseTokenResponse(endpoint, status, hdr, body, c.now(), secrets...)
	if c.platform != nil {
		c.platform.sent(form.Get("client_assertion"), err)
	}
	return resp, err
}

// redact replaces every appearance of the secrets in text — as they are,
// form-urlencoded, path-escaped, or in a Basic credential — with
// "[redacted]".
func redact(text string, secrets []string) string {
	var forms []string
	for _, s := range secrets {
		if len(s) < 4 {
			continue
		}
		forms = append(forms, s, url.QueryEscape(s), url.PathEscape(s))
		if b, ok := strings.CutPrefix(s, "Basic "); ok {
			forms = append(forms, b)
			if raw, err := base64.StdEncoding.DecodeString(b); err == nil {
				forms = append(forms, string(raw))
			}
		}
	}
	for _, f := range forms {
		if f != "" {
			text = strings.ReplaceAll(text, f, "[redacted]")
		}
	}
	return text
}

// do sends req and reads at most MaxResponseBytes of the answer.
func (c *Client) do(req *http.Request) (int, http.Header, []byte, error) {
	endpoint := req.URL.Redacted()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, &Error{Endpoint: endpoint, Transient: true, Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return 0, nil, nil, &Error{Endpoint: endpoint, StatusCode: resp.StatusCode, Transient: true, Err: fmt.Errorf("reading body: %w", unwrapURLError(err))}
	}
	if len(body) > MaxResponseBytes {
		return 0, nil, nil, &Error{Endpoint: endpoint, StatusCode: resp.StatusCode, Transient: true, Err: ErrResponseTooLarge}
	}
	return resp.StatusCode, resp.Header, body, nil
}

// unwrapURLError drops *url.Error's "Post "URL":" prefix: Error already
// names the endpoint.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

type tokenJSON struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	Scope            json.RawMessage `json:"scope"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

// parseTokenResponse turns an HTTP answer from a token endpoint into a
// Response or an *Error. It never includes the body in an error: a
// misbehaving server may echo credentials.
func parseTokenResponse(endpoint string, status int, hdr http.Header, body []byte, now time.Time, secrets ...string) (*Response, error) {
	var tj tokenJSON
	jsonErr := json.Unmarshal(body, &tj)
	if status < 200 || status > 299 || tj.Error != "" {
		e := &Error{
			Endpoint:    endpoint,
			StatusCode:  status,
			RetryAfter:  ParseRetryAfter(hdr.Get("Retry-After"), now),
			Code:        printable(redact(tj.Error, secrets), 64),
			Description: printable(redact(tj.ErrorDescription, secrets), 512),
		}
		if jsonErr != nil && len(body) > 0 {
			e.Err = notJSON(hdr, body)
		}
		e.Transient = classify(status, e.Code)
		return nil, e
	}
	if jsonErr != nil {
		return nil, &Error{Endpoint: endpoint, StatusCode: status, Transient: true, Err: notJSON(hdr, body)}
	}
	if tj.AccessToken == "" {
		return nil, &Error{Endpoint: endpoint, StatusCode: status, Transient: true, Err: errors.New("response has no access_token")}
	}
	// Everything the IdP sends is input: a token that could break out of
	// a header, a shell line or a curl config is never served.
	if !ipc.ValidToken(tj.AccessToken) {
		return nil, &Error{Endpoint: endpoint, StatusCode: status, Transient: true,
			Err: fmt.Errorf("response's access_token (%d bytes) is not an RFC 6750 token (letters, digits, -._~+/ and trailing =); nothing is served", len(tj.AccessToken))}
	}
	tokenType, ok := normalTokenType(tj.TokenType)
	if !ok {
		return nil, &Error{Endpoint: endpoint, StatusCode: status, Transient: true,
			Err: fmt.Errorf("response's token_type (%d bytes) is not an HTTP authentication scheme name such as Bearer", len(tj.TokenType))}
	}
	return &Response{
		AccessToken: tj.AccessToken,
		TokenType:   tokenType,
		Scope:       printable(scopeString(tj.Scope), 4096),
		ExpiresIn:   expiresIn(tj.ExpiresIn),
	}, nil
}

// normalTokenType spells the common token types as RFC 6750 and RFC 9449
// do (an IdP may send "bearer"), defaults a missing one to Bearer (RFC
// 6749 makes it required; some IdPs omit it), and accepts another only if
// it is an HTTP token (RFC 9110 §5.6.2), as an auth scheme must be.
func normalTokenType(t string) (string, bool) {
	switch {
	case t == "", strings.EqualFold(t, "bearer"):
		return "Bearer", true
	case strings.EqualFold(t, "dpop"):
		return "DPoP", true
	case len(t) > 32:
		return "", false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return "", false
		}
	}
	return t, true
}

func notJSON(hdr http.Header, body []byte) error {
	ct, _, _ := mime.ParseMediaType(hdr.Get("Content-Type"))
	if ct == "" {
		ct = "no Content-Type"
	}
	return fmt.Errorf("response is not a JSON object (%s, %d bytes)", ct, len(body))
}

// expiresIn reads expires_in as a number or a numeric string. Anything else,
// zero or negative, is "not stated" (0); the caller falls back to the JWT's
// exp or its default. Huge values are capped here only to avoid overflow.
func expiresIn(raw json.RawMessage) time.Duration {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	var s string
	if raw[0] == '"' {
		if json.Unmarshal(raw, &s) != nil {
			return 0
		}
	} else {
		s = string(raw)
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(secs) || secs <= 0 {
		return 0
	}
	const maxSecs = float64(100 * 365 * 24 * 3600)
	return time.Duration(min(secs, maxSecs) * float64(time.Second))
}

// scopeString accepts the standard space-separated string and, leniently,
// a JSON array of strings.
func scopeString(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return strings.Join(list, " ")
	}
	return ""
}

// printable keeps an IdP-supplied string safe to log: control characters
// dropped, length capped.
func printable(s string, limit int) string {
	s = ipc.SafeText(s)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// IsLoopback reports whether host (without port) names the local machine,
// where plain http cannot be intercepted on the wire.
func IsLoopback(host string) bool { return spec.IsLoopback(host) }

// CheckEndpointURL accepts an absolute https URL, or http to a loopback host.
func CheckEndpointURL(raw string) error { return spec.CheckEndpointURL(raw) }
