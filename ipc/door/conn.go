package door

import (
	"context"
	"crypto/tls"
	"net"
	"sync"

	"github.com/tokenagent/tokenagent/ipc"
)

// connInfo is what the listener learnt about a connection at accept,
// attached to every request on it by ConnContext.
type connInfo struct {
	id uint64 // 1 for the listener's first connection, and so on
	// caller is who is on the connection; read it through get, which
	// finishes what the listener left for the first request.
	caller ipc.Caller
	err    error
	finish func(*ipc.Caller) string
	once   sync.Once
	// detail says, for logs, what could not be learnt of the caller.
	detail string
	// exe is the peer's program, read at most once per connection and
	// only when a log line asks for it (RequestEvent.Executable).
	exe func() string
}

func newConnInfo(id uint64, caller ipc.Caller, finish func(*ipc.Caller) string, err error) *connInfo {
	ci := &connInfo{id: id, caller: caller, err: err, finish: finish}
	ci.exe = sync.OnceValue(func() string {
		if ci.err != nil {
			return ""
		}
		// The caller chose its program's name: it reaches logs (and
		// terminals) only as text.
		return ipc.SafeText(executable(ci.get().PID))
	})
	return ci
}

// get is the connection's caller, finished on first use.
func (ci *connInfo) get() ipc.Caller {
	ci.once.Do(func() {
		if ci.err == nil && ci.finish != nil {
			ci.detail = ci.finish(&ci.caller)
		}
	})
	return ci.caller
}

// unpin lets go of the caller's pinned process when the connection
// closes; a first request that never came finds nothing to finish.
func (ci *connInfo) unpin() {
	ci.once.Do(func() {})
	unpin(ci.caller.Process)
}

// unknownConn is the connection of a listener that is not Listen's or
// Limit's: nobody knows who is on it.
var unknownConn = &connInfo{err: ErrNoCredentials, exe: func() string { return "" }}

type connKey struct{}

// ConnContext attaches a connection's caller (from Listen or Limit, with
// or without TLS over it) to the context of every request on it; it is the http.Server.ConnContext
// of every Server. A connection from another listener carries
// ErrNoCredentials: it is refused, never anonymous.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	ci := unknownConn
	if tc, ok := c.(*tls.Conn); ok { // a TLS door: the caller is the connection's under it
		c = tc.NetConn()
	}
	if pc, ok := c.(*peerConn); ok {
		ci = pc.info
	}
	return context.WithValue(ctx, connKey{}, ci)
}

func connFrom(ctx context.Context) *connInfo {
	if ci, ok := ctx.Value(connKey{}).(*connInfo); ok {
		return ci
	}
	return unknownConn
}

// CallerFrom returns the peer credentials of the connection a request
// arrived on, or why there are none.
func CallerFrom(ctx context.Context) (ipc.Caller, error) {
	ci := connFrom(ctx)
	return ci.get(), ci.err
}

// ConnFrom is the number of the connection a request came on (see
// RequestEvent.Conn); 0 when unknown.
func ConnFrom(ctx context.Context) uint64 { return connFrom(ctx).id }
