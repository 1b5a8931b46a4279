package daemon

import (
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/config"
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
