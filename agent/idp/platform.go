package idp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// AssertionFile is where a platform keeps the client's assertion fresh
// (package secretref's RotatingFile).
type AssertionFile interface {
	// Read returns the file's content, read anew when it changed on disk
	// or when fresh is set.
	Read(fresh bool) ([]byte, error)
	// String names the file in errors ("file:/var/run/…").
	String() string
}

// assertionRenewal is how close to its exp a held assertion is read
// again however unchanged its file looks: kubelet renews a projected
// token at 80 % of its lifetime, and a file rewritten in place within
// one mtime tick looks unchanged.
const assertionRenewal = time.Minute

// AssertionError is a platform assertion the agent cannot send: its file
// is missing or unreadable, or holds no JWT, or one without a usable exp,
// or one already expired. It never holds the assertion; it names the
// file and says what to do. The agent asks again, reading only the file,
// until the platform puts a good token there: no IdP request is made.
type AssertionError struct {
	// File is the reference ("file:/var/run/…").
	File string
	// Err is what is wrong, with what to do.
	Err error
}

func (e *AssertionError) Error() string {
	return fmt.Sprintf("client_assertion %s: %v", e.File, e.Err)
}

func (e *AssertionError) Unwrap() error { return e.Err }

// CheckAssertion reads the platform's assertion as a token request
// would, without sending it: an *AssertionError says what is wrong with
// the file. A client of another auth method has none to check.
func (c *Client) CheckAssertion() error {
	if c.platform == nil {
		return nil
	}
	_, err := c.platform.current(c.now())
	return err
}

// AssertionExpiresAt is the exp of the platform assertion last read;
// zero for other auth methods, or when none could be read.
func (c *Client) AssertionExpiresAt() time.Time {
	if c.platform == nil {
		return time.Time{}
	}
	return c.platform.expiresAt()
}

// AssertionRenewed reports whether the platform has written a new
// client assertion since the IdP refused the last one for good: the
// refusal, about a token the platform has since replaced, need not be
// held any longer. False for every other auth method.
func (c *Client) AssertionRenewed() bool { return c.platform != nil && c.platform.renewed() }

// platformAssertion is the assertion a platform keeps in a file, with
// its exp, re-read when the file changes or its exp nears.
type platformAssertion struct {
	file AssertionFile

	mu     sync.Mutex
	held   string
	expiry time.Time
	// accepted: the IdP gave a token for held once already.
	accepted bool
	// refused is the assertion the IdP last refused for good ("" when
	// the last answer was a token): a new one in the file may be what the
	// platform wrote to fix it.
	refused string
}

// current returns the assertion to send at now, or an *AssertionError.
func (p *platformAssertion) current(now time.Time) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	data, err := p.file.Read(false)
	if err == nil && p.take(data) == nil && p.expiry.Sub(now) < assertionRenewal {
		data, err = p.file.Read(true)
	}
	if err != nil {
		return "", &AssertionError{File: p.file.String(), Err: fmt.Errorf("%w; the agent reads it before each token request and asks again after a backoff", withoutPath(err, p.file.String()))}
	}
	if err := p.take(data); err != nil {
		return "", &AssertionError{File: p.file.String(), Err: err}
	}
	if !now.Before(p.expiry) {
		return "", &AssertionError{File: p.file.String(), Err: fmt.Errorf(
			"the token in it expired at %s (%v ago); whatever writes it (kubelet, the workload identity webhook, the CI step, the SPIFFE helper) has stopped renewing it: fix that, the agent reads the file again before each token request",
			p.expiry.UTC().Format(time.RFC3339), now.Sub(p.expiry).Round(time.Second))}
	}
	return p.held, nil
}

// take makes data the held assertion, unless it is the held one already.
func (p *platformAssertion) take(data []byte) error {
	text := string(bytes.TrimSpace(data))
	if text == p.held && text != "" {
		return nil
	}
	exp, err := jwtExpiry(text)
	if err != nil {
		p.held, p.expiry = "", time.Time{}
		return err
	}
	p.held, p.expiry, p.accepted = text, exp, false
	return nil
}

// errReused explains an IdP's refusal of an assertion it had accepted
// before.
var errReused = errors.New("the IdP had accepted this same assertion before: it takes each one once (it checks the jti, as oidc-provider does), " +
	"so the platform must write a new token to the file before each token request the agent makes (at refresh_at of the access token's lifetime); " +
	"the agent asks again as soon as the file holds a new token, after permanent_backoff, or at once after a reload")

// sent notes the IdP's answer to assertion: accepted, or refused after
// an earlier acceptance — which err then says.
func (p *platformAssertion) sent(assertion string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if assertion != p.held {
		return
	}
	var ie *Error
	switch {
	case err == nil:
		p.accepted, p.refused = true, ""
	case errors.As(err, &ie) && !ie.Transient:
		p.refused = assertion
		if p.accepted && ie.Err == nil {
			ie.Err = errReused
		}
	}
}

// renewed reports whether the file now holds a usable assertion other
// than the one the IdP last refused for good.
func (p *platformAssertion) renewed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refused == "" {
		return false
	}
	data, err := p.file.Read(false)
	return err == nil && p.take(data) == nil && p.held != p.refused
}

// expiresAt is the held assertion's exp; zero when none is held.
func (p *platformAssertion) expiresAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.expiry
}

// jwtExpiry reads the exp of a compact JWS without checking its
// signature (the IdP does that). Its errors never quote the text.
func jwtExpiry(text string) (time.Time, error) {
	const notJWT = "it holds no JWT (a compact JWS: three base64url parts joined by dots); is it the platform's token file?"
	parts := strings.Split(text, ".")
	if len(parts) != 3 || parts[2] == "" {
		return time.Time{}, errors.New(notJWT)
	}
	for _, part := range parts { // a token must fit a form field as it is
		if strings.ContainsFunc(part, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			return time.Time{}, errors.New(notJWT)
		}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, errors.New(notJWT)
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, errors.New(notJWT)
	}
	if claims.Exp == nil {
		return time.Time{}, errors.New("its JWT has no exp claim; IdPs refuse an assertion without one")
	}
	secs, err := claims.Exp.Float64()
	if err != nil || math.IsNaN(secs) || secs <= 0 || secs > 1e11 {
		return time.Time{}, errors.New("its JWT's exp claim is not a time (seconds since 1970)")
	}
	return time.Unix(int64(secs), 0), nil
}

// withoutPath drops the "file:PATH: " a reader's error starts with, which
// AssertionError says already.
func withoutPath(err error, ref string) error {
	if rest, ok := strings.CutPrefix(err.Error(), ref); ok {
		return errors.New(strings.TrimPrefix(rest, ": "))
	}
	return err
}
