package door

import (
	"encoding/json"
	"net/http"
	"strconv"
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
	h["Content-Type"] = []string{contentType}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

// WriteError answers with an ipc.ErrorResponse of code and description,
// with Retry-After (whole seconds, rounded up) when retryAfter > 0.
func WriteError(w http.ResponseWriter, status int, code, description string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	WriteJSON(w, status, ipc.ErrorResponse{Error: code, ErrorDescription: description})
}
