package door

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// WriteJSON answers with v and an explicit Content-Length, so that a
// minimal client (the CLI's) never meets a chunked body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	data, _ := json.Marshal(v)
	Write(w, status, "application/json", append(data, '\n'))
}

// Write answers with body as it is.
func Write(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	switch contentType {
	case "application/json":
		h["Content-Type"] = jsonType
	default:
		h["Content-Type"] = []string{contentType}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

// Header values every answer of a door carries, shared: net/http copies
// a handler's header when it writes it, and nothing here changes them.
var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
	noCache  = []string{"no-cache"}
)

// NoStore marks an answer as never to be cached (Cache-Control, and
// Pragma for HTTP/1.0 caches when pragma is set).
func NoStore(w http.ResponseWriter, pragma bool) {
	h := w.Header()
	h["Cache-Control"] = noStore
	if pragma {
		h["Pragma"] = noCache
	}
}

// buffers hold answers while they are written: w.Write copies them.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// WriteAppended answers with the JSON body that appendBody appends to a
// pooled buffer, and a newline.
func WriteAppended(w http.ResponseWriter, status int, appendBody func([]byte) []byte) {
	bp := buffers.Get().(*[]byte)
	b := append(appendBody((*bp)[:0]), '\n')
	Write(w, status, "application/json", b)
	if cap(b) <= 64<<10 { // a huge answer's buffer is not kept
		*bp = b[:0]
		buffers.Put(bp)
	}
}

// WriteError answers with an ipc.ErrorResponse of code and description,
// with Retry-After (whole seconds, rounded up) when retryAfter > 0.
func WriteError(w http.ResponseWriter, status int, code, description string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	WriteJSON(w, status, ipc.ErrorResponse{Error: code, ErrorDescription: description})
}

// AppendJSONString appends s as a JSON string the way encoding/json
// writes it: plain ASCII as it is, anything it would escape through it.
// Doors append their hot answers by hand (a cache hit's token) and hold
// them to json.Marshal in tests.
func AppendJSONString(b []byte, s string) []byte {
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

// Fail answers an OAuth-style error ({"error","error_description"}, RFC
// 6749 §5.2) with status, and a Retry-After when retryAfter is not "",
// and records it in ev: what the token endpoint and the cloud identity
// doors answer when they cannot serve.
func Fail(w http.ResponseWriter, ev *RequestEvent, status int, code, description, retryAfter string) {
	ev.Status, ev.Code, ev.Reason = status, code, description
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	WriteJSON(w, status, ipc.ErrorResponse{Error: code, ErrorDescription: description})
}
