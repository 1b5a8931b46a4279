package door

import (
	"cmp"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// RequestEvent describes one answered request, for logs and audits. It
// never holds a token: TokenSHA256 is a short fingerprint.
type RequestEvent struct {
	// Door is how the request came: "socket", or "token_endpoint".
	Door string
	// Conn numbers the connection the request came on (1, 2, … per
	// listener): requests on one kept-alive connection share it.
	Conn uint64
	// Caller is who asked; meaningless when Unidentified.
	Caller ipc.Caller
	// Unidentified is set when nobody could say who asked (another
	// network namespace, a client that hung up, no resources): such a
	// caller is logged as unidentified, never as uid 0.
	Unidentified bool
	Method       string
	Path         string
	Profile      string
	Status       int
	Code         string // the error code; "" on success
	Reason       string // the error description; "" on success
	// Detail is for the log only, never for the caller: why a caller was
	// refused or is only partly known, and what to do about it.
	Detail   string
	Duration time.Duration
	// TokenSHA256 is the served token's ipc.Fingerprint.
	TokenSHA256 string
	// Denied is set when the caller was refused a profile that exists
	// (the answer itself does not say so).
	Denied bool

	conn  *connInfo
	start time.Time
}

// NewEvent starts the event of a request that came through door.
func NewEvent(door string, r *http.Request) RequestEvent {
	ci := connFrom(r.Context())
	ev := RequestEvent{Door: door, Conn: ci.id, Caller: ci.get(), Method: r.Method, Path: r.URL.Path, conn: ci, start: time.Now()}
	if ci.err != nil {
		ev.Unidentified, ev.Caller, ev.Detail = true, ipc.Caller{}, ci.err.Error()
	} else {
		ev.Detail = ci.detail
	}
	return ev
}

// Executable is the caller's program as text ("" when unknown), read
// from the kernel the first time a request of the connection asks for it
// and kept for the connection's life: a lookup by path that only denial
// and debug log lines need is not made for every connection. Call it
// while handling the event (Observe), when the caller is still there.
// Like the pid, it is for logs only: nothing is authorised by it.
func (ev *RequestEvent) Executable() string {
	if ev.Caller.Exe != "" || ev.conn == nil {
		return ev.Caller.Exe
	}
	return ev.conn.exe()
}

// Deny marks the event as the refusal of a profile that exists when err
// (an *ipc.Error) says so, and adds to its Detail, for the log only,
// which allow rule refused the caller and how.
func (ev *RequestEvent) Deny(err error) {
	var e *ipc.Error
	if !errors.As(err, &e) || !e.Denied {
		return
	}
	ev.Denied = true
	if e.Why != "" {
		ev.Detail = strings.TrimPrefix(ev.Detail+"; "+e.Why, "; ")
	}
}

// Outcome is "ok" or the error code, as tokenagent_requests_total counts
// it.
func (ev *RequestEvent) Outcome() string { return cmp.Or(ev.Code, "ok") }

// countedProfile is the profile label a request is counted under: none
// when the caller was refused it (denied, unknown, or an OAuth client
// that did not authenticate), so that no metric series carries a name the
// caller may not know — a denied name counted under its own label would
// undo the uniform 404. The event itself keeps the name for the log.
func (ev *RequestEvent) countedProfile() string {
	if ev.Denied {
		return ""
	}
	switch ev.Code {
	case ipc.CodeUnknownProfile, ipc.CodeForbidden, "invalid_client":
		return ""
	}
	return ev.Profile
}

// Counter tallies answered requests by door, profile and outcome.
type Counter interface {
	Count(door, profile, outcome string)
}

// Recorder ends a door's events: it counts them for /metrics and hands
// them to Observe.
type Recorder struct {
	// Door names the door in events and metrics.
	Door string
	// Requests, if set, counts answered requests (see Done's count):
	// *metrics.Requests, for tokenagent_requests_total.
	Requests Counter
	// Observe, if set, is called once per answered request (denials
	// included), after the answer is written.
	Observe func(RequestEvent)
}

// Event starts the event of a request to this door.
func (rec *Recorder) Event(r *http.Request) RequestEvent { return NewEvent(rec.Door, r) }

// Done counts the event if count says so, and observes it.
func (rec *Recorder) Done(ev *RequestEvent, count bool) {
	if count && rec.Requests != nil {
		rec.Requests.Count(rec.Door, ev.countedProfile(), ev.Outcome())
	}
	if rec.Observe != nil {
		ev.Duration = time.Since(ev.start)
		rec.Observe(*ev)
	}
}
