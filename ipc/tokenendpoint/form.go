package tokenendpoint

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// form is a request body's parameters in their order: what
// http.Request.PostForm holds, without its maps (a token request has a
// handful of parameters, and every request of every OAuth client is one).
type form []struct{ key, value string }

func (f form) get(key string) string {
	for _, p := range f {
		if p.key == key {
			return p.value
		}
	}
	return ""
}

func (f form) has(key string) bool { return f.count(key) > 0 }

func (f form) count(key string) int {
	n := 0
	for _, p := range f {
		if p.key == key {
			n++
		}
	}
	return n
}

func (f form) all(key string) []string {
	var out []string
	for _, p := range f {
		if p.key == key {
			out = append(out, p.value)
		}
	}
	return out
}

// readForm reads the body as http.Request.ParseForm does for
// PostForm, with the same errors: an unreadable or oversized body, a
// malformed query string or body, or a malformed Content-Type. A body of
// another media type has no parameters.
func readForm(r *http.Request) (form, error) {
	if r.URL.RawQuery != "" {
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			return nil, err
		}
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return nil, err
		}
		if mt != "application/x-www-form-urlencoded" {
			return nil, nil
		}
	}
	if r.Body == nil {
		return nil, errors.New("missing form body")
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	return parseForm(string(data))
}

// parseForm is url.ParseQuery keeping the order and making no map.
func parseForm(query string) (form, error) {
	var f form
	var firstErr error
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if strings.Contains(pair, ";") {
			firstErr = errors.Join(firstErr, errors.New("invalid semicolon separator in query"))
			continue
		}
		if pair == "" {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(key)
		if err != nil {
			firstErr = errors.Join(firstErr, err)
			continue
		}
		value, err = url.QueryUnescape(value)
		if err != nil {
			firstErr = errors.Join(firstErr, err)
			continue
		}
		f = append(f, struct{ key, value string }{key, value})
	}
	return f, firstErr
}
