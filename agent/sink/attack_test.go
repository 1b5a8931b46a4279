package sink_test

// The file-sink attacks of docs/reliability.md's security table, each as
// a real process of another uid against the root agent's writer.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/sink"
	"github.com/tokenagent/tokenagent/agent/sink/sinktest"
)

// TestSinkDirLinkRepointedRefused: an attacker who may make entries in a
// sticky directory (as in /tmp) puts a link where the sink's directory
// belongs, pointing at a folder of root's, then re-points it at a second
// one. The root agent writes through neither (the old check judged the
// link by its target, and the agent replaced root's files in both).
func TestSinkDirLinkRepointedRefused(t *testing.T) {
	s := sinktest.New(t)
	link := filepath.Join(s.Shared, "tokens")
	f := sink.File{Path: filepath.Join(link, "p"), Format: "plain", Mode: 0o600, UID: -1, GID: -1}
	s.Attack(t, "ln -s "+s.Victims[0]+" "+link)
	if err := f.Write(token("tok-1"), now); err == nil || !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Write through the attacker's link = %v; want a refusal naming %s", err, link)
	}
	s.Attack(t, "rm "+link+" && ln -s "+s.Victims[1]+" "+link)
	if err := f.Write(token("tok-2"), now); err == nil || !strings.Contains(err.Error(), link) {
		t.Errorf("Write through the re-pointed link = %v; want a refusal naming %s", err, link)
	}
	if err := f.Remove(); err == nil {
		t.Error("Remove through the attacker's link = nil; want a refusal")
	}
	s.VictimsIntact(t)
}

// TestSinkDirMadeFirstByAttackerRefused: the sink's directory is missing
// and an attacker makes it first in a sticky directory; the agent writes
// nothing into it (the old writer did, and the attacker, owning the
// directory, could swap the file under the readers), and the refusal
// names the directory and its owner. A directory the agent made itself
// there is beyond the attacker's reach.
func TestSinkDirMadeFirstByAttackerRefused(t *testing.T) {
	s := sinktest.New(t)
	dir := filepath.Join(s.Shared, "tokens")
	s.Attack(t, "mkdir -m 0755 "+dir)
	f := sink.File{Path: filepath.Join(dir, "p"), Format: "plain", Mode: 0o644, UID: -1, GID: -1}
	if err := f.Write(token("tok-1"), now); err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "uid "+strconv.Itoa(s.UID)) {
		t.Errorf("Write into the attacker's directory = %v; want a refusal naming %s and its owner", err, dir)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the agent wrote %d entries into the attacker's directory", len(entries))
	}

	mine := filepath.Join(s.Shared, "mine")
	if err := (sink.File{Path: filepath.Join(mine, "p"), Format: "plain", Mode: 0o644, UID: -1, GID: -1}).Write(token("tok-1"), now); err != nil {
		t.Fatalf("Write with its directory missing in a sticky directory = %v; want the directory made", err)
	}
	if out, err := s.Try("mv " + mine + " " + mine + ".old || rm -r " + mine); err == nil {
		t.Errorf("the attacker moved the agent's own sink directory away in a sticky directory:\n%s", out)
	}
}
