package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// endpoint returns the token endpoint, discovering it from the issuer once.
func (c *Client) endpoint(ctx context.Context) (string, error) {
	c.mu.Lock()
	known := c.tokenURL
	c.mu.Unlock()
	if known != "" {
		return known, nil
	}
	found, err := c.discover(ctx)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.tokenURL = found
	c.mu.Unlock()
	return found, nil
}

// TokenURL returns the token endpoint, discovering it if need be.
func (c *Client) TokenURL(ctx context.Context) (string, error) { return c.endpoint(ctx) }

// discover reads the issuer's OpenID Connect discovery document and, where
// there is none (404), its RFC 8414 authorization server metadata.
func (c *Client) discover(ctx context.Context) (string, error) {
	issuer := strings.TrimSuffix(c.cfg.Issuer, "/")
	u, err := url.Parse(issuer)
	if err != nil {
		return "", &Error{Endpoint: issuer, Err: fmt.Errorf("issuer is not a URL: %w", err)}
	}
	oidc := issuer + "/.well-known/openid-configuration"
	// RFC 8414 §3.1: the well-known segment goes between host and path.
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + u.EscapedPath()

	var errs []error
	for _, doc := range []string{oidc, rfc8414} {
		tokenURL, err := c.readMetadata(ctx, doc, issuer)
		if err == nil {
			return tokenURL, nil
		}
		var ie *Error
		if errors.As(err, &ie) && ie.StatusCode == http.StatusNotFound {
			errs = append(errs, err)
			continue
		}
		return "", err
	}
	return "", &Error{Endpoint: issuer, StatusCode: http.StatusNotFound,
		Err: fmt.Errorf("no discovery document at %s or %s; check issuer or set token_url", oidc, rfc8414)}
}

// ErrIssuerMismatch: a discovery document named another issuer than the
// one asked for (metrics count it as its own result).
var ErrIssuerMismatch = errors.New("issuer mismatch")

func (c *Client) readMetadata(ctx context.Context, doc, issuer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, doc, nil)
	if err != nil {
		return "", &Error{Endpoint: doc, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	status, hdr, body, err := c.do(req)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", &Error{Endpoint: doc, StatusCode: status, Transient: classify(status, ""),
			RetryAfter: ParseRetryAfter(hdr.Get("Retry-After"), c.now())}
	}
	var meta struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return "", &Error{Endpoint: doc, StatusCode: status, Transient: true, Err: notJSON(hdr, body)}
	}
	// OpenID Connect Discovery §4.3 / RFC 8414 §3.3: the document must be
	// about the issuer we asked for, or a server could send our client
	// credentials to a token endpoint of its choosing.
	if strings.TrimSuffix(meta.Issuer, "/") != issuer {
		return "", &Error{Endpoint: doc, StatusCode: status,
			Err: fmt.Errorf("%w: the document is for issuer %q, not %q; set issuer to exactly what the IdP publishes", ErrIssuerMismatch, printable(meta.Issuer, 200), issuer)}
	}
	if meta.TokenEndpoint == "" {
		return "", &Error{Endpoint: doc, StatusCode: status, Err: errors.New("document has no token_endpoint; set token_url")}
	}
	if err := CheckEndpointURL(meta.TokenEndpoint); err != nil {
		return "", &Error{Endpoint: doc, StatusCode: status, Err: fmt.Errorf("token_endpoint: %w", err)}
	}
	return meta.TokenEndpoint, nil
}
