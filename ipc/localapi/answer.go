package localapi

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
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
	b = door.AppendJSONString(b, t.AccessToken)
	b = append(b, `,"token_type":`...)
	b = door.AppendJSONString(b, t.TokenType)
	b = append(b, `,"expires_at":"`...)
	b = t.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","expires_in":`...)
	b = strconv.AppendInt(b, t.ExpiresIn, 10)
	if t.Scope != "" {
		b = append(b, `,"scope":`...)
		b = door.AppendJSONString(b, t.Scope)
	}
	return append(b, '}')
}
