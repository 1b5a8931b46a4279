package daemon

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/ipc/door"
)

// requestLog logs answered requests: who asked (uid, gid, pid,
// executable), for what, the outcome and how long it took, and the served
// token's fingerprint. Answers given (a token, a listing) and attempts
// refused during a backoff are debug: at the default level the log says
// what changed, never one line per served request. Denials are warnings,
// the agent's own failures errors and other refusals (an unknown profile,
// a bad request) info — each bounded by a logLimit, so that a caller
// looping on a denied profile writes a few lines a minute and a count,
// not a line per attempt. At log_level = "debug" every request is logged.
// A line that is not written is not built, and the caller's executable is
// read only for a line that is written. The audit of every token handed
// out is auditLog's.
type requestLog struct {
	log                     zerolog.Logger
	denied, failed, refused *logLimit
}

func newRequestLog(log zerolog.Logger, now func() time.Time) *requestLog {
	return &requestLog{
		log:     log,
		denied:  newLogLimit("denials", zerolog.WarnLevel, now),
		failed:  newLogLimit("failed requests", zerolog.ErrorLevel, now),
		refused: newLogLimit("refused requests", zerolog.InfoLevel, now),
	}
}

// flush writes the summaries of windows that have ended, or with end (at
// shutdown) of the current ones.
func (rl *requestLog) flush(end bool) {
	for _, l := range []*logLimit{rl.denied, rl.failed, rl.refused} {
		l.flush(rl.log, end)
	}
}

func (rl *requestLog) observe(ev door.RequestEvent) {
	denied := ev.Status == http.StatusForbidden || ev.Denied
	level := zerolog.DebugLevel
	var limit *logLimit
	switch {
	case denied:
		level, limit = zerolog.WarnLevel, rl.denied
	case ev.Status >= 500 && ev.Status != http.StatusServiceUnavailable:
		level, limit = zerolog.ErrorLevel, rl.failed
	case ev.Status == http.StatusTooManyRequests:
		// Attempts refused while a source waits out its backoff: the
		// wrong secret that started the wait was the warning.
		level = zerolog.DebugLevel
	case ev.Code != "":
		level, limit = zerolog.InfoLevel, rl.refused
	}
	min := zerolog.Level(logLevel.Load())
	if level < min {
		return
	}
	if limit != nil && min > zerolog.DebugLevel && !limit.allow(requestKey(ev), rl.log) {
		return
	}
	e := rl.log.WithLevel(level)
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

// requestKey is who asked for what, the answer and why (the detail
// without its numbers: pids, ports): the first line of each key in a
// window is written, so a caller refused by another selector than the
// last is told too, while one process after another refused for the same
// reason is counted.
func requestKey(ev door.RequestEvent) string {
	who := "unidentified"
	if !ev.Unidentified {
		who = fmt.Sprint(ev.Caller.UID)
	}
	why := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, ev.Detail)
	return ev.Door + "\x00" + who + "\x00" + ev.Profile + "\x00" + ev.Code + "\x00" + why
}
