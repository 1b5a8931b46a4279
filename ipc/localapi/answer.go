package localapi

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// appendToken appends t as encoding/json writes it, byte for byte, with
// none of its reflection: the answer to every cache hit.
// TestAppendTokenIsJSON holds it to json.Marshal.
func appendToken(b []byte, t *ipc.TokenResponse) []byte {
	if y := t.ExpiresAt.Year(); y < 0 || y > 9999 {
		data, _ := json.Marshal(t)
		return append(b, data...)
	}
	b = append(b, `{"access_token":`...)
	b = appendString(b, t.AccessToken)
	b = append(b, `,"token_type":`...)
	b = appendString(b, t.TokenType)
	b = append(b, `,"expires_at":"`...)
	b = t.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","expires_in":`...)
	b = strconv.AppendInt(b, t.ExpiresIn, 10)
	if t.Scope != "" {
		b = append(b, `,"scope":`...)
		b = appendString(b, t.Scope)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string the way encoding/json does:
// plain ASCII as it is, anything it would escape through it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			data, _ := json.Marshal(s)
			return append(b, data...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
