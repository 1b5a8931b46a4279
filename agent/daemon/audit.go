package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/ipc/door"
)

// auditLog records each token handed out (audit_log), one JSON line per
// token on whichever door it went out: when, the door and connection, who
// (uid, gid, pid, executable), the profile and the token's fingerprint —
// never the token. Lines are queued and written by one goroutine, so
// that a slow disk never holds a request; a line that finds the queue
// full, or that the file refuses, is counted (tokenagent keeps serving)
// and the first and every 1000th are logged. Reopen (SIGHUP, after
// logrotate renamed the file) switches files between two lines: each
// line is in exactly one of the old and the new file.
type auditLog struct {
	path  string
	log   zerolog.Logger
	queue chan auditItem
	done  chan struct{} // closed when the writer has written everything and closed the file

	f       *os.File // the writer goroutine's
	failing bool     // the last write failed (the writer goroutine's)
	closeMu sync.RWMutex
	closed  bool
	lostMu  sync.Mutex
	lost    uint64 // lines not written (queue full, write errors)
}

// auditItem is a line to write, or a request to reopen the file.
type auditItem struct {
	line   []byte
	reopen chan error
}

// auditQueue is how many lines may wait for the disk before new ones are
// dropped (and counted).
const auditQueue = 1 << 14

// auditLine is the JSON of one line. UID, GID and PID are pointers: an
// unidentified caller has none (0 would read as root), and a TCP caller
// no pid.
type auditLine struct {
	Time        time.Time `json:"time"`
	Door        string    `json:"door"`
	Conn        uint64    `json:"conn"`
	Caller      string    `json:"caller,omitempty"` // "unidentified"
	UID         *uint32   `json:"uid,omitempty"`
	GID         *uint32   `json:"gid,omitempty"`
	PID         *int32    `json:"pid,omitempty"`
	Exe         string    `json:"exe,omitempty"`
	Profile     string    `json:"profile"`
	TokenSHA256 string    `json:"token_sha256"`
}

// openAudit opens (creating it 0600) the audit log at path for appending
// and starts its writer.
func openAudit(path string, log zerolog.Logger) (*auditLog, error) {
	f, err := openAuditFile(path)
	if err != nil {
		return nil, err
	}
	a := &auditLog{path: path, log: log, f: f, queue: make(chan auditItem, auditQueue), done: make(chan struct{})}
	go a.write()
	return a, nil
}

// openAuditFile opens path for appending, creating it 0600. An existing
// file must be a regular file owned by the agent's user and writable by
// no one else: lines another user could write or truncate are no audit.
func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit_log %s: %w; the agent's user must be able to create it (its directory, e.g. /var/log/tokenagent, owned by that user)", path, err)
	}
	fi, err := f.Stat()
	if err == nil {
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case !fi.Mode().IsRegular():
			err = errors.New("is not a regular file")
		case st != nil && int(st.Uid) != os.Geteuid():
			err = fmt.Errorf("is owned by uid %d, not the agent's user (uid %d): chown it, or remove it and let the agent create it", st.Uid, os.Geteuid())
		case fi.Mode().Perm()&0o022 != 0:
			err = fmt.Errorf("has mode %v, writable by others: chmod 0600 it", fi.Mode().Perm())
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit_log %s: %w", path, err)
	}
	return f, nil
}

// record queues the line of ev if ev handed out a token. It never blocks.
// Call it while handling the event: the caller's executable is read then.
func (a *auditLog) record(ev door.RequestEvent) {
	if ev.TokenSHA256 == "" {
		return
	}
	l := auditLine{Time: time.Now().UTC(), Door: ev.Door, Conn: ev.Conn, Profile: ev.Profile, TokenSHA256: ev.TokenSHA256}
	if ev.Unidentified {
		l.Caller = "unidentified"
	} else {
		uid, gid, pid := ev.Caller.UID, ev.Caller.GID, ev.Caller.PID
		l.UID, l.GID = &uid, &gid
		if pid != 0 { // the socket's callers; a TCP caller's pid is not known
			l.PID, l.Exe = &pid, ev.Executable()
		}
	}
	line, _ := json.Marshal(l)
	line = append(line, '\n')
	a.closeMu.RLock()
	defer a.closeMu.RUnlock()
	if a.closed {
		a.lose(errors.New("the audit log is closed (shutting down)"))
		return
	}
	select {
	case a.queue <- auditItem{line: line}:
	default:
		a.lose(fmt.Errorf("%d lines wait for the disk already", auditQueue))
	}
}

// lose counts a line not written, and logs the first of a run.
func (a *auditLog) lose(err error) {
	a.lostMu.Lock()
	a.lost++
	n := a.lost
	a.lostMu.Unlock()
	if n == 1 || n%1000 == 0 {
		a.log.Error().Err(err).Str("audit_log", a.path).Uint64("lost_lines", n).
			Msg("audit line not written: tokens are still handed out; check the disk holding the audit log")
	}
}

// Lost is how many audit lines were not written.
func (a *auditLog) Lost() uint64 {
	a.lostMu.Lock()
	defer a.lostMu.Unlock()
	return a.lost
}

// write is the writer goroutine: it writes queued lines in order and
// reopens the file when asked, until the queue is closed.
func (a *auditLog) write() {
	defer close(a.done)
	for item := range a.queue {
		if item.reopen != nil {
			item.reopen <- a.reopenFile()
			continue
		}
		if _, err := a.f.Write(item.line); err != nil {
			a.failing = true
			a.lose(err)
			continue
		}
		if a.failing {
			a.failing = false
			a.log.Info().Str("audit_log", a.path).Uint64("lost_lines", a.Lost()).Msg("audit log writes work again")
		}
	}
	a.f.Close()
}

// reopenFile opens path anew (logrotate renamed the file) and closes the
// old file; if the new one cannot be opened, lines keep going to the old.
func (a *auditLog) reopenFile() error {
	f, err := openAuditFile(a.path)
	if err != nil {
		return err
	}
	a.f.Close()
	a.f = f
	return nil
}

// Reopen switches to a new file at the path after the lines queued so
// far; it returns once it has (or has failed, and the old file is still
// written).
func (a *auditLog) Reopen() error {
	a.closeMu.RLock()
	if a.closed {
		a.closeMu.RUnlock()
		return nil
	}
	ch := make(chan error, 1)
	a.queue <- auditItem{reopen: ch} // may wait for room: a reload, not a request
	a.closeMu.RUnlock()
	return <-ch
}

// Close writes what is queued, closes the file and returns once done.
// Lines recorded later are counted as lost.
func (a *auditLog) Close() {
	a.closeMu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	a.closeMu.Unlock()
	<-a.done
}
