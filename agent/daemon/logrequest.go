package daemon

import (
	"net/http"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/ipc/door"
)

// logRequests logs one event per socket request: who asked (uid, gid, pid,
// executable), for what, the outcome and how long it took, and the served
// token's fingerprint. Denials are warnings, other failures info.
func logRequests(log zerolog.Logger) func(door.RequestEvent) {
	return func(ev door.RequestEvent) {
		var e *zerolog.Event
		switch {
		case ev.Status == http.StatusForbidden || ev.Denied:
			e = log.Warn()
		case ev.Status >= 500 && ev.Status != http.StatusServiceUnavailable:
			e = log.Error()
		default:
			e = log.Info()
		}
		e = e.Str("door", ev.Door).Uint64("conn", ev.Conn).Uint32("uid", ev.Caller.UID).Uint32("gid", ev.Caller.GID).Int32("pid", ev.Caller.PID).Str("exe", ev.Executable()).
			Str("method", ev.Method).Str("path", ev.Path).Int("status", ev.Status).Dur("duration", ev.Duration)
		if ev.Profile != "" {
			e = e.Str("profile", ev.Profile)
		}
		if ev.TokenSHA256 != "" {
			e = e.Str("token_sha256", ev.TokenSHA256)
		}
		if ev.Code != "" {
			e = e.Str("error", ev.Code).Str("reason", ev.Reason)
		}
		msg := "request"
		if ev.Status == http.StatusForbidden || ev.Denied {
			msg = "request denied"
		}
		e.Msg(msg)
	}
}
