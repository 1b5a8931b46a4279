package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/ipc"
)

// Backend returns the agent as an ipc.Backend: it checks each caller
// against the profile's allow list and turns the engine's errors into the
// protocol's statuses.
func (a *Agent) Backend() ipc.Backend { return backend{a} }

type backend struct{ a *Agent }

func (b backend) Token(ctx context.Context, caller ipc.Caller, req ipc.TokenRequest) (*ipc.TokenResponse, error) {
	s, err := b.a.source(req.Profile)
	if err != nil {
		return nil, protocolError(req.Profile, err)
	}
	if !s.prof.access.allows(caller) {
		return nil, &ipc.Error{Status: http.StatusForbidden, Code: ipc.CodeForbidden,
			Description: fmt.Sprintf("uid %d may not use profile %q (see its allow_users, allow_groups, allow_uids, allow_gids)", caller.UID, req.Profile)}
	}
	// A refresh without a report is answered like a token request: only
	// a report of the current token makes the agent fetch a new one.
	var tok *Token
	if req.Refresh && req.RejectedSHA256 != "" {
		tok, err = b.a.ReportRejected(ctx, req.Profile, req.RejectedSHA256, req.MinValid)
	} else {
		tok, err = b.a.Token(ctx, req.Profile, req.MinValid)
	}
	if err != nil {
		return nil, protocolError(req.Profile, err)
	}
	s.served.Add(1)
	return &ipc.TokenResponse{
		AccessToken: tok.AccessToken,
		TokenType:   tok.TokenType,
		ExpiresAt:   tok.ExpiresAt.UTC(),
		ExpiresIn:   int64(tok.ExpiresAt.Sub(b.a.clock.Now()) / time.Second),
		Scope:       tok.Scope,
	}, nil
}

func (b backend) Profiles(caller ipc.Caller) []ipc.ProfileInfo {
	var out []ipc.ProfileInfo
	sources := *b.a.sources.Load()
	for _, st := range b.a.Status() {
		if s := sources[st.Name]; s == nil || !s.prof.access.allows(caller) {
			continue
		}
		out = append(out, ipc.ProfileInfo{
			Name: st.Name, ExpiresAt: st.ExpiresAt.UTC(), LastRefresh: st.LastRefresh.UTC(),
			LastError: st.LastError, NextAttempt: st.NextAttempt.UTC(), UpstreamRequests: st.UpstreamRequests, Idle: st.Idle,
		})
	}
	return out
}

// WriteMetrics adds the engine's series to /metrics.
func (b backend) WriteMetrics(w io.Writer) { b.a.writeMetrics(w) }

// protocolError maps an engine error to a status: 404 unknown profile, 400
// unsatisfiable min_valid or bad report, 502 the IdP refused (its code
// passed through), 503 IdP unreachable or failing with no valid token
// (with Retry-After), 503 shutting down, 504 the caller's deadline.
func protocolError(profile string, err error) error {
	var ie *idp.Error
	switch {
	case errors.Is(err, ErrUnknownProfile):
		return &ipc.Error{Status: http.StatusNotFound, Code: ipc.CodeUnknownProfile, Description: fmt.Sprintf("no profile %q is configured", profile)}
	case errors.Is(err, ErrMinValid):
		return &ipc.Error{Status: http.StatusBadRequest, Code: ipc.CodeMinValid, Description: err.Error()}
	case errors.Is(err, ErrBadReport):
		return &ipc.Error{Status: http.StatusBadRequest, Code: ipc.CodeInvalidRequest, Description: err.Error()}
	case errors.Is(err, ErrClosed):
		return &ipc.Error{Status: http.StatusServiceUnavailable, Code: ipc.CodeShuttingDown, Description: "the agent is shutting down"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &ipc.Error{Status: http.StatusGatewayTimeout, Code: ipc.CodeTimeout, Description: fmt.Sprintf("profile %q: no token before the request's deadline", profile)}
	case errors.As(err, &ie) && !ie.Transient:
		code := ie.Code
		if code == "" {
			code = ipc.CodeIdPError
		}
		return &ipc.Error{Status: http.StatusBadGateway, Code: code, Description: err.Error()}
	case errors.As(err, &ie):
		return &ipc.Error{Status: http.StatusServiceUnavailable, Code: ipc.CodeIdPUnavailable, Description: err.Error(), RetryAfter: retryIn(err)}
	default:
		return &ipc.Error{Status: http.StatusServiceUnavailable, Code: ipc.CodeIdPUnavailable, Description: err.Error()}
	}
}

// retryIn is how long the source holds off the IdP; 0 when it does not.
func retryIn(err error) time.Duration {
	var he *holdError
	if errors.As(err, &he) {
		return he.wait
	}
	return 0
}
