package daemon

import (
	"net/http"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/ipc/door"
)

// logRequests logs one event per answered request: who asked (uid, gid,
// pid, executable), for what, the outcome and how long it took, and the
// served token's fingerprint. Denials are warnings, the agent's own
// failures errors, other refusals info, and answers given (a token, a
// listing) debug: per-request lines are for debugging (log_level =
// "debug"); the audit of every token handed out is Observe's. A line
// below the log level is not built at all, and the caller's executable
// is read only for a line that is written.
func logRequests(log zerolog.Logger) func(door.RequestEvent) {
	return func(ev door.RequestEvent) {
		denied := ev.Status == http.StatusForbidden || ev.Denied
		level := zerolog.DebugLevel
		switch {
		case denied:
			level = zerolog.WarnLevel
		case ev.Status >= 500 && ev.Status != http.StatusServiceUnavailable:
			level = zerolog.ErrorLevel
		case ev.Status == http.StatusTooManyRequests:
			// Attempts refused while a source waits out its backoff: the
			// wrong secret that started the wait was the warning.
			level = zerolog.DebugLevel
		case ev.Code != "":
			level = zerolog.InfoLevel
		}
		if int32(level) < logLevel.Load() {
			return
		}
		e := log.WithLevel(level)
		if e == nil || !e.Enabled() {
			return
		}
		e = e.Str("door", ev.Door).Uint64("conn", ev.Conn)
		if ev.Unidentified {
			// Never a uid: 0 would make an unknown caller look like root.
			e = e.Str("caller", "unidentified")
		} else {
			e = e.Uint32("uid", ev.Caller.UID).Uint32("gid", ev.Caller.GID).Int32("pid", ev.Caller.PID).Str("exe", ev.Executable())
		}
		e = e.Str("method", ev.Method).Str("path", ev.Path).Int("status", ev.Status).Dur("duration", ev.Duration)
		if ev.Profile != "" {
			e = e.Str("profile", ev.Profile)
		}
		if ev.TokenSHA256 != "" {
			e = e.Str("token_sha256", ev.TokenSHA256)
		}
		if ev.Code != "" {
			e = e.Str("error", ev.Code).Str("reason", ev.Reason)
		}
		if ev.Detail != "" {
			e = e.Str("detail", ev.Detail)
		}
		msg := "request"
		if denied {
			msg = "request denied"
		}
		e.Msg(msg)
	}
}
