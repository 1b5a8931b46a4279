package daemon

import (
	"io"
	stdlog "log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
)

// NewLogger logs to w: console format on a terminal, JSON otherwise,
// unless the configuration says which.
func NewLogger(cfg *config.Config, w io.Writer) zerolog.Logger {
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	// Durations in seconds: "ttl":120 reads better at 3 a.m. than 120000.
	zerolog.DurationFieldUnit = time.Second
	zerolog.DurationFieldInteger = false
	setLogLevel(cfg)
	return zerolog.New(levelWriter{w}).With().Timestamp().Logger()
}

// logLevel is the least level that loggers made by NewLogger write; a
// reload changes it (log_level applies without a restart).
var logLevel atomic.Int32

func setLogLevel(cfg *config.Config) {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || cfg.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	logLevel.Store(int32(level))
}

// levelWriter drops events below logLevel.
type levelWriter struct{ w io.Writer }

func (l levelWriter) Write(p []byte) (int, error) { return l.w.Write(p) }

func (l levelWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	if int32(level) < logLevel.Load() {
		return len(p), nil
	}
	return l.w.Write(p)
}

// Per-request lines at info and above are bounded: a caller looping on a
// denied profile, or an accept loop out of file descriptors, must not
// write a line per attempt (a soak wrote 305 MB in 11 minutes, and
// journald then dropped the lines that mattered). Each kind of line gets
// a logLimit: in each logWindow the first line of each key is written, up
// to logBurst lines in all; the rest are counted, and the count is
// written as one summary line when the window ends.
const (
	logWindow = time.Minute
	logBurst  = 10
)

// logLimit bounds one kind of line (denials, failures, the HTTP server's
// errors). Its zero value is not usable: make it with newLogLimit.
type logLimit struct {
	kind  string // what the summary line counts: "denials", …
	level zerolog.Level
	now   func() time.Time

	mu         sync.Mutex
	start      time.Time           // of the current window
	logged     map[string]struct{} // keys written this window (at most logBurst)
	suppressed int                 // lines not written this window
}

func newLogLimit(kind string, level zerolog.Level, now func() time.Time) *logLimit {
	return &logLimit{kind: kind, level: level, now: now, start: now(), logged: map[string]struct{}{}}
}

// allow reports whether a line of key may be written now: the first of
// its key in this window, while the window has room. Otherwise it is
// counted. A window that has ended is summed up first (on log).
func (l *logLimit) allow(key string, log zerolog.Logger) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(log, false)
	if _, seen := l.logged[key]; seen || len(l.logged) >= logBurst {
		l.suppressed++
		return false
	}
	l.logged[key] = struct{}{}
	return true
}

// flush writes the summary of a window that has ended — or, with end
// (at shutdown), of the current one; the daemon calls it every logWindow,
// so that the count of a flood that stopped is told.
func (l *logLimit) flush(log zerolog.Logger, end bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(log, end)
}

// rollLocked starts a new window if the current one has ended (or end
// says to end it), writing how many lines it suppressed.
func (l *logLimit) rollLocked(log zerolog.Logger, end bool) {
	now := l.now()
	if !end && now.Sub(l.start) < logWindow {
		return
	}
	if l.suppressed > 0 {
		log.WithLevel(l.level).Str("kind", l.kind).Int("suppressed", l.suppressed).Dur("window", now.Sub(l.start).Round(time.Second)).
			Msgf("%d more %s not logged (at most the first of each caller and %d in all per minute; log_level = \"debug\" logs each)", l.suppressed, l.kind, logBurst)
	}
	l.start, l.suppressed = now, 0
	clear(l.logged)
}

// httpErrorLog is the http.Server ErrorLog of every door: Go's server
// writes raw text there ("http: Accept error: … too many open files;
// retrying in 5ms", TLS handshake errors), dozens a second under fd
// exhaustion. Each becomes a structured warning, bounded by limit and keyed
// by the message's kind (the text before its first detail).
func httpErrorLog(log zerolog.Logger, door string, limit *logLimit) *stdlog.Logger {
	return stdlog.New(httpErrorWriter{log: log, door: door, limit: limit}, "", 0)
}

type httpErrorWriter struct {
	log   zerolog.Logger
	door  string
	limit *logLimit
}

func (w httpErrorWriter) Write(p []byte) (int, error) {
	text := strings.TrimSpace(string(p))
	kind := text
	// "http: Accept error: accept unix …: too many open files; retrying in 5ms"
	// → "http: Accept error"; "http: TLS handshake error from 1.2.3.4:5: EOF"
	// → "http: TLS handshake error from 1.2.3.4".
	if prefix, rest, ok := strings.Cut(text, ": "); ok {
		kind, _, _ = strings.Cut(rest, ":")
		kind = prefix + ": " + kind
	}
	if w.limit.allow(w.door+"\x00"+kind, w.log) {
		w.log.Warn().Str("door", w.door).Str("error", ipc.SafeText(text)).Msg("HTTP server error")
	}
	return len(p), nil
}
