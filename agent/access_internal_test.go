package agent

import (
	"errors"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/ipc"
)

// TestOverflowUIDIsNobodysIdentity: an agent running as the overflow uid
// (nobody) must not treat every unmapped user of a user namespace, who
// all appear as that uid, as itself.
func TestOverflowUIDIsNobodysIdentity(t *testing.T) {
	nobody := ipc.OverflowUID()
	unlisted := access{}
	listed := access{UIDs: []uint32{nobody}}
	tests := []struct {
		name     string
		acc      access
		caller   ipc.Caller
		agentUID uint32
		want     bool
	}{
		{"agent as nobody, caller nobody, not listed", unlisted, ipc.Caller{UID: nobody, GID: nobody}, nobody, false},
		{"agent as nobody, caller nobody, listed by uid", listed, ipc.Caller{UID: nobody, GID: nobody}, nobody, true},
		{"agent as nobody, caller root", unlisted, ipc.Caller{UID: 0}, nobody, true},
		{"agent as 1000, caller 1000", unlisted, ipc.Caller{UID: 1000, GID: 1000}, 1000, true},
		{"agent as 1000, caller nobody", unlisted, ipc.Caller{UID: nobody, GID: nobody}, 1000, false},
		{"listed group", access{GIDs: []uint32{4242}}, ipc.Caller{UID: 2000, GID: 1, Groups: []uint32{4242}}, 1000, true},
	}
	for _, tt := range tests {
		if got := tt.acc.allows(tt.caller, tt.agentUID); got != tt.want {
			t.Errorf("%s: allows = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// process is a caller's process as a door pinned it: here, a fixed
// identity, or why there is none.
type process struct {
	id     ipc.ProcessIdentity
	sha256 string
	err    error
	reads  *int
	// elsewhere: the executable is named as the allowed path is, but is
	// another file (mounted over it in the caller's mount namespace).
	elsewhere bool
}

func (p process) Identity() (ipc.ProcessIdentity, error) {
	if p.reads != nil {
		*p.reads++
	}
	id := p.id
	id.SHA256 = func() (string, error) { return p.sha256, nil }
	id.IsExe = func(path string) bool { return path == p.id.Exe && !p.elsewhere }
	return id, p.err
}

// TestAllowEntries: an [[allow]] entry admits a caller only when every
// selector it sets matches; any entry (or the allow_* lists) may admit;
// a refusal names each entry's failing selector; the process is read only
// when an entry's credentials match, and at most once.
func TestAllowEntries(t *testing.T) {
	u := func(v uint32) *uint32 { return &v }
	sum := "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
	acc := access{Entries: []entry{
		{Index: 0, UID: u(1000), Unit: "job-a.service"},
		{Index: 1, Cgroup: "/kubepods.slice/pod1"},
		{Index: 2, GID: u(50), Exe: "/opt/app/bin/app", SHA256: sum},
	}}
	jobA := ipc.ProcessIdentity{PID: 7, Exe: "/usr/bin/tokenagent", Cgroup: "/system.slice/job-a.service", Unit: "job-a.service"}
	jobB := ipc.ProcessIdentity{PID: 8, Exe: "/usr/bin/tokenagent", Cgroup: "/system.slice/job-b.service", Unit: "job-b.service"}
	pod := ipc.ProcessIdentity{PID: 9, Exe: "/bin/x", Cgroup: "/kubepods.slice/pod1/ctr", Unit: ""}
	pod10 := ipc.ProcessIdentity{PID: 9, Exe: "/bin/x", Cgroup: "/kubepods.slice/pod10/ctr"}
	app := ipc.ProcessIdentity{PID: 10, Exe: "/opt/app/bin/app", Cgroup: "/user.slice"}
	tests := []struct {
		name     string
		caller   ipc.Caller
		rule     string
		whyParts []string
	}{
		{"job-a as 1000", ipc.Caller{UID: 1000, Process: process{id: jobA}}, "allow[0]", nil},
		{"job-b as 1000", ipc.Caller{UID: 1000, Process: process{id: jobB}}, "",
			[]string{`allow[0]: unit "job-b.service" is not "job-a.service"`, `allow[1]: cgroup "/system.slice/job-b.service" is not under`, "allow[2]: uid 1000 is not in group 50"}},
		{"job-a as 1001", ipc.Caller{UID: 1001, Process: process{id: jobA}}, "", []string{"allow[0]: uid 1001 is not 1000"}},
		{"a pod's container", ipc.Caller{UID: 5, Process: process{id: pod}}, "allow[1]", nil},
		{"pod10 is not under pod1", ipc.Caller{UID: 5, Process: process{id: pod10}}, "", []string{`cgroup "/kubepods.slice/pod10/ctr" is not under "/kubepods.slice/pod1"`}},
		{"app, right digest", ipc.Caller{UID: 5, GID: 50, Process: process{id: app, sha256: sum}}, "allow[2]", nil},
		{"app, other digest", ipc.Caller{UID: 5, GID: 50, Process: process{id: app, sha256: "00"}}, "", []string{"allow[2]: sha256 of \"/opt/app/bin/app\" is 00, not " + sum}},
		{"app's path over another file", ipc.Caller{UID: 5, GID: 50, Process: process{id: app, sha256: sum, elsewhere: true}}, "", []string{`allow[2]: exe "/opt/app/bin/app" is named like the allowed one, but is not the file at /opt/app/bin/app`}},
		{"app, exec'd since", ipc.Caller{UID: 5, GID: 50, Process: process{err: errors.New("process 10 runs another program")}}, "", []string{"allow[2]: process unknown: process 10 runs another program"}},
		{"not pinned", ipc.Caller{UID: 1000}, "", []string{"allow[0]: process unknown: the caller's process was not pinned"}},
		{"root", ipc.Caller{UID: 0}, "root", nil},
		{"agent user", ipc.Caller{UID: 900}, "agent user", nil},
	}
	for _, tt := range tests {
		rule, why := acc.decide(tt.caller, 900)
		if rule != tt.rule {
			t.Errorf("%s: rule %q (%s), want %q", tt.name, rule, why, tt.rule)
		}
		for _, part := range tt.whyParts {
			if !strings.Contains(why, part) {
				t.Errorf("%s: why = %q, want it to say %q", tt.name, why, part)
			}
		}
	}

	reads := 0
	acc.decide(ipc.Caller{UID: 1000, Process: process{id: jobB, reads: &reads}}, 900)
	if reads != 1 {
		t.Errorf("process read %d times for one decision over 3 entries, want 1", reads)
	}
	reads = 0
	(access{Entries: []entry{{UID: u(1), Unit: "x.service"}}}).decide(ipc.Caller{UID: 2, Process: process{id: jobA, reads: &reads}}, 900)
	if reads != 0 {
		t.Errorf("process read %d times when no entry's credentials match, want 0", reads)
	}
	if !(access{Entries: []entry{{Exe: "/x"}}}).pinsProcesses() || (access{Entries: []entry{{UID: u(1)}}}).pinsProcesses() {
		t.Error("pinsProcesses: want true for an exe selector, false for uid alone")
	}
}
