package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RenderToken writes tok in format: the bare token, JSON, an
// Authorization header line, a shell export of envVar, or a curl config
// line; each ends in a newline. It refuses a token that is not an RFC
// 6750 b64token, so that no format can carry a control character or break
// out of its quoting; token_type and scope lose their control characters.
func RenderToken(format, envVar string, tok TokenResponse, now time.Time) (string, error) {
	if !ValidToken(tok.AccessToken) {
		return "", errors.New("the token is not an RFC 6750 token; refusing to write it out")
	}
	switch format {
	case "plain":
		return tok.AccessToken + "\n", nil
	case "json":
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		// encoding/json leaves DEL and C1 controls as they are.
		tok.TokenType, tok.Scope = SafeText(tok.TokenType), SafeText(tok.Scope)
		tok.ExpiresIn = int64(tok.ExpiresAt.Sub(now) / time.Second)
		err := enc.Encode(tok)
		return b.String(), err
	case "header":
		return "Authorization: Bearer " + tok.AccessToken + "\n", nil
	case "env":
		return "export " + envVar + "=" + ShellQuote(tok.AccessToken) + "\n", nil
	case "curl":
		// A curl config line: curl -K <(tokenagent token NAME --format curl) URL
		return `header = "Authorization: Bearer ` + tok.AccessToken + "\"\n", nil
	}
	return "", fmt.Errorf("unknown format %q (plain, json, header, env, curl)", format)
}

// ShellQuote quotes s as one POSIX sh word.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// ValidEnvName reports whether s can be a shell variable name.
func ValidEnvName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}
