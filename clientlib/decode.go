package clientlib

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// decodeToken reads a token answer. The answer is a flat JSON object of
// strings and numbers; read directly, it costs a fresh process a few
// hundred microseconds less than encoding/json's first, reflective decode
// — a tenth of what the CLI may add to a bare request (docs/benchmarks.md).
// Anything unusual (escapes, nesting) goes to encoding/json.
func decodeToken(data []byte) (ipc.TokenResponse, error) {
	var tr ipc.TokenResponse
	fields, ok := flatObject(data)
	for k := range fields {
		for _, name := range [...]string{"access_token", "token_type", "expires_at", "expires_in", "scope"} {
			if k != name && strings.EqualFold(k, name) {
				ok = false // encoding/json matches keys without regard to case
			}
		}
	}
	if !ok {
		err := json.Unmarshal(data, &tr)
		return tr, err
	}
	tr.AccessToken, tr.TokenType, tr.Scope = fields["access_token"], fields["token_type"], fields["scope"]
	if v := fields["expires_at"]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			err := json.Unmarshal(data, &tr) // let it say what is wrong
			return tr, err
		}
		tr.ExpiresAt = t
	}
	return tr, nil
}

// flatObject parses {"k":"v","n":123,…} with no escapes, nesting or
// duplicate keys; ok is false for anything else.
func flatObject(data []byte) (map[string]string, bool) {
	for _, b := range data {
		if b == '\\' || b >= 0x80 { // escapes and non-ASCII: encoding/json
			return nil, false
		}
	}
	s := strings.Trim(string(data), " \t\n\r")
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, false
	}
	fields := map[string]string{}
	rest := s[1 : len(s)-1]
	for i := 0; ; {
		i = skipSpace(rest, i)
		if i == len(rest) && len(fields) == 0 {
			return fields, true // {}
		}
		key, j, ok := quoted(rest, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(rest, j)
		if i == len(rest) || rest[i] != ':' {
			return nil, false
		}
		i = skipSpace(rest, i+1)
		var value string
		if i < len(rest) && rest[i] == '"' {
			if value, i, ok = quoted(rest, i); !ok {
				return nil, false
			}
		} else {
			j := i
			for j < len(rest) && rest[j] != ',' {
				switch rest[j] {
				case '"', '{', '[', ':':
					return nil, false
				}
				j++
			}
			value = strings.TrimRight(rest[i:j], " \t\n\r")
			if !jsonLiteral(value) {
				return nil, false
			}
			i = j
		}
		if _, dup := fields[key]; dup {
			return nil, false
		}
		fields[key] = value
		i = skipSpace(rest, i)
		if i == len(rest) {
			return fields, true
		}
		if rest[i] != ',' {
			return nil, false
		}
		i++
	}
}

// quoted reads a string starting at s[i] == '"' (no escapes: the caller
// has checked) and returns it and the index after its closing quote.
func quoted(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", i, false
	}
	end := strings.IndexByte(s[i+1:], '"')
	if end < 0 {
		return "", i, false
	}
	v := s[i+1 : i+1+end]
	for k := 0; k < len(v); k++ {
		if v[k] < 0x20 { // control characters must be escaped in JSON
			return "", i, false
		}
	}
	return v, i + 2 + end, true
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// jsonLiteral reports whether v is true, false, null or a JSON number.
func jsonLiteral(v string) bool {
	switch v {
	case "true", "false", "null":
		return true
	}
	i := 0
	digits := func() int {
		n := 0
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(v) && v[i] == '-' {
		i++
	}
	if i < len(v) && v[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(v) && v[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(v)
}
