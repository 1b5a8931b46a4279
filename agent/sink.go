package agent

import (
	"cmp"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	filesink "github.com/tokenagent/tokenagent/agent/sink"
	"github.com/tokenagent/tokenagent/ipc"
)

// sink is a config.FileSink with its names resolved: the file the
// package sink writes, and its path, which reloads compare.
type sink struct {
	path string
	file filesink.File
}

// resolveSink looks up the sink's owner and group (at start, not at parse).
func resolveSink(f config.FileSink) (sink, error) {
	s := sink{path: filepath.Clean(f.Path)}
	s.file = filesink.File{Path: s.path, Format: cmp.Or(f.Format, "plain"), UID: -1, GID: -1}
	s.file.Mode, _ = f.FileMode()
	if f.Owner != "" {
		u, err := user.Lookup(f.Owner)
		if err != nil {
			return s, fmt.Errorf("owner: no user %q on this host", f.Owner)
		}
		s.file.UID, _ = strconv.Atoi(u.Uid)
	}
	if f.Group != "" {
		gid, err := LookupGID(f.Group)
		if err != nil {
			return s, fmt.Errorf("group: %w", err)
		}
		s.file.GID = int(gid)
	}
	// The directory and any file already at the path, as Write will see
	// them: check-config and a reload refuse what a write would.
	if err := s.file.Check(); err != nil {
		return s, err
	}
	return s, nil
}

// write puts tok into the sink's file.
func (s sink) write(tok Token, now time.Time) error {
	return s.file.Write(ipc.TokenResponse{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Scope: tok.Scope, ExpiresAt: tok.ExpiresAt.UTC()}, now)
}

// remove deletes the sink's file (its profile or the sink was removed).
func (s sink) remove() error { return s.file.Remove() }

// sinkWait bounds how long the callers waiting for a fresh token wait
// for its file sinks to be written: on a healthy disk the files are
// current when the callers are answered; a hung one costs them at most
// this, and the write goes on in the background. It is waited on the
// agent's clock, as every wait that decides what a caller gets is.
const sinkWait = time.Second

// writeSinksAfter writes c to the profile's file sinks, waiting at most
// sinkWait. Writes are one at a time per profile and the latest token
// wins: a write that finds a newer token pending leaves it to the next. A
// source a reload replaced writes nothing more.
func (s *source) writeSinksAfter(c *cached) {
	if len(s.prof.sinks) == 0 {
		return
	}
	s.sinkNext.Store(c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.sinkMu.Lock()
		defer s.sinkMu.Unlock()
		next := s.sinkNext.Swap(nil)
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if next != nil && !closed {
			s.writeSinks(next.Token)
		}
	}()
	waited := make(chan struct{})
	stop := s.agent.clock.AfterFunc(sinkWait, func() { close(waited) })
	defer stop()
	select {
	case <-done:
	case <-waited:
		s.log.Error().Dur("waited", sinkWait).Msg("a token file sink write has not finished: its disk may be hung; callers are answered, and the file is written when the disk answers")
	}
}

// writeSinks puts tok into the profile's file sinks; a failure is logged
// and never stops the token being served.
func (s *source) writeSinks(tok Token) {
	for i, sk := range s.prof.sinks {
		if err := sk.write(tok, s.agent.clock.Now()); err != nil {
			s.log.Error().Err(err).Str("file", sk.path).Msg("cannot write the token file sink; callers of the socket are still served")
			continue
		}
		s.sinkExpiry[i].Store(tok.ExpiresAt.UnixNano())
	}
}

// sinkExpiresAt is when the token the profile's file sinks hold expires:
// the earliest over its files that were written (zero: none was).
func (s *source) sinkExpiresAt() time.Time {
	var earliest int64
	for i := range s.sinkExpiry {
		if e := s.sinkExpiry[i].Load(); e != 0 && (earliest == 0 || e < earliest) {
			earliest = e
		}
	}
	if earliest == 0 {
		return time.Time{}
	}
	return time.Unix(0, earliest).UTC()
}
