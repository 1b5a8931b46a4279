package daemon

import (
	"cmp"
	"context"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/localapi"
)

// backend serves the engine to the socket (localapi.Backend) and to
// /metrics (metrics.Collector): the engine answers both itself, apart
// from who the agent is and the wire form of a token.
type backend struct {
	*agent.Agent
	d *Daemon
}

func (b backend) Info() ipc.AgentInfo {
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	return ipc.AgentInfo{Version: cmp.Or(b.d.opts.Version, "tokenagentd "+ipc.Version()), Config: b.d.cfg.Path(),
		StartedAt: b.d.started.UTC(), ReloadedAt: b.d.reloaded.UTC()}
}

func (b backend) Token(ctx context.Context, caller ipc.Caller, req localapi.TokenRequest) (*ipc.TokenResponse, error) {
	var tok *agent.Token
	var err error
	// A refresh without a report is answered like a token request: only a
	// report of the current token makes the agent fetch a new one.
	if req.Refresh && req.RejectedSHA256 != "" {
		tok, err = b.Agent.ReportRejected(ctx, caller, req.Profile, req.RejectedSHA256, req.MinValid)
	} else {
		tok, err = b.Agent.Token(ctx, caller, req.Profile, req.MinValid)
	}
	if err != nil {
		return nil, err
	}
	return &ipc.TokenResponse{
		AccessToken: tok.AccessToken,
		TokenType:   tok.TokenType,
		ExpiresAt:   tok.ExpiresAt.UTC(),
		ExpiresIn:   int64(tok.ExpiresAt.Sub(b.d.clock.Now()) / time.Second),
		Scope:       tok.Scope,
	}, nil
}

// endpointBackend serves the engine to the loopback token endpoint: the
// engine's Match, and a token as the socket serves it.
type endpointBackend struct{ backend }

func (e endpointBackend) Token(ctx context.Context, caller ipc.Caller, profile string) (*ipc.TokenResponse, error) {
	return e.backend.Token(ctx, caller, localapi.TokenRequest{Profile: profile})
}

// azureBackend serves the engine to the Azure identity endpoint: the
// engine's MatchResource, and a token as the socket serves it.
type azureBackend struct{ backend }

func (e azureBackend) Token(ctx context.Context, caller ipc.Caller, profile string) (*ipc.TokenResponse, error) {
	return e.backend.Token(ctx, caller, localapi.TokenRequest{Profile: profile})
}
