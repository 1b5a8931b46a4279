package ipc

import (
	"errors"
	"time"
)

// The sentinel errors: one vocabulary for every failure a caller branches
// on, on both sides of the socket. The engine returns them (wrapped in an
// *Error), the server turns them into HTTP statuses, and clientlib turns
// the statuses back into the same values, so that
//
//	errors.Is(err, ipc.ErrForbidden)
//
// holds whether err came from the engine in process or over the socket.
var (
	// ErrAgentUnavailable: nothing answers on the socket, or the agent is
	// at its connection cap.
	ErrAgentUnavailable = errors.New("agent not reachable")
	// ErrBadRequest: the request does not fit the protocol.
	ErrBadRequest = errors.New("bad request")
	// ErrForbidden: the caller may not use the endpoint (the metrics of a
	// user who is neither root nor the agent's, a request a browser made,
	// a connection whose peer cannot be identified).
	ErrForbidden = errors.New("forbidden")
	// ErrUnknownProfile: no profile of that name is configured for the
	// caller: it does not exist, or its allow lists leave the caller out.
	// The two are one answer on both sides of the socket, so that nobody
	// can list the profile names by guessing; the engine marks a denial
	// in Error.Denied, for the audit log only.
	ErrUnknownProfile = errors.New("unknown profile")
	// ErrNotFound: no such endpoint, or not with that method (the agent
	// may be older or newer than the client).
	ErrNotFound = errors.New("no such endpoint")
	// ErrMinValid: the IdP's tokens do not live as long as the caller's
	// min_valid asks; retrying cannot help.
	ErrMinValid = errors.New("min_valid cannot be met")
	// ErrIdPRefused: the identity provider refused the agent (a permanent
	// error such as invalid_client); Error.Code is its RFC 6749 code.
	ErrIdPRefused = errors.New("identity provider refused")
	// ErrIdPUnavailable: the identity provider cannot be reached or keeps
	// failing, and no valid token is held; Error.RetryAfter says when the
	// agent asks again.
	ErrIdPUnavailable = errors.New("identity provider unavailable")
	// ErrShuttingDown: the agent is stopping.
	ErrShuttingDown = errors.New("agent is shutting down")
	// ErrTimeout: no token before the caller's deadline.
	ErrTimeout = errors.New("no token before the deadline")
)

// Error is a failure as it crosses the socket: which sentinel it is, its
// wire code and description, and when to retry. The engine returns one
// for every failed request; clientlib returns one for every non-200
// answer.
type Error struct {
	// Kind is one of the sentinel errors; nil means an internal error.
	Kind error
	// Code is the wire code; "" means the Kind's own (see CodeOf). With
	// ErrIdPRefused it is the identity provider's RFC 6749 code.
	Code string
	// Description says what happened and what to do. It never holds a
	// token or a secret.
	Description string
	// RetryAfter, when set, is how long until the agent asks the IdP again.
	RetryAfter time.Duration
	// Err is the cause in process (an *idp.Error, a context error); it is
	// never sent over the socket.
	Err error
	// Denied marks an ErrUnknownProfile for a profile that exists but is
	// not the caller's: for the agent's audit log, never sent.
	Denied bool
	// Why says, for the agent's log only (never sent), which of the
	// profile's allow rules refused a Denied caller and how.
	Why string
}

func (e *Error) Error() string {
	switch {
	case e.Kind == nil:
		return e.Description
	case e.Description == "":
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Description
}

// Unwrap makes errors.Is see the Kind and errors.As see the cause.
func (e *Error) Unwrap() []error {
	var out []error
	for _, err := range []error{e.Kind, e.Err} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// WireCode is the code sent for e: Code, or its Kind's.
func (e *Error) WireCode() string {
	if e.Code != "" {
		return e.Code
	}
	return CodeOf(e.Kind)
}

// kinds pairs each sentinel with its wire code; ErrIdPRefused carries the
// IdP's own code instead, CodeIdPError when it sent none.
var kinds = []struct {
	kind error
	code string
}{
	{ErrBadRequest, CodeInvalidRequest},
	{ErrForbidden, CodeForbidden},
	{ErrUnknownProfile, CodeUnknownProfile},
	{ErrNotFound, CodeNotFound},
	{ErrNotFound, CodeMethod},
	{ErrMinValid, CodeMinValid},
	{ErrIdPRefused, CodeIdPError},
	{ErrIdPUnavailable, CodeIdPUnavailable},
	{ErrShuttingDown, CodeShuttingDown},
	{ErrAgentUnavailable, CodeOverloaded},
	{ErrTimeout, CodeTimeout},
}

// CodeOf is the wire code of a sentinel; CodeInternal for anything else.
func CodeOf(kind error) string {
	for _, k := range kinds {
		if k.kind == kind {
			return k.code
		}
	}
	return CodeInternal
}

// KindOf is the sentinel a wire code stands for; nil for codes that are
// not the agent's own (an IdP's RFC 6749 code, or an unknown one).
func KindOf(code string) error {
	for _, k := range kinds {
		if k.code == code {
			return k.kind
		}
	}
	return nil
}

// Status is the HTTP status every door answers a failure of kind with:
// the one table for the socket, the token endpoint and clientlib's
// reading of answers. (An int, not net/http's names: this package links
// no net/http.)
func Status(kind error) int {
	switch kind {
	case ErrBadRequest, ErrMinValid:
		return 400
	case ErrForbidden:
		return 403
	case ErrUnknownProfile, ErrNotFound:
		return 404
	case ErrIdPRefused:
		return 502
	case ErrIdPUnavailable, ErrShuttingDown, ErrAgentUnavailable:
		return 503
	case ErrTimeout:
		return 504
	}
	return 500
}

// StatusOf is Status(e.Kind), except that a wrong method is 405.
func StatusOf(e *Error) int {
	if e.Kind == ErrNotFound && e.Code == CodeMethod {
		return 405
	}
	return Status(e.Kind)
}

// Errorf is shorthand for an *Error of kind with a description.
func Errorf(kind error, description string) *Error {
	return &Error{Kind: kind, Description: description}
}
