package ipc

import "testing"

// TestUnitOf: the unit a cgroup path is in, as systemd names it.
func TestUnitOf(t *testing.T) {
	for cgroup, want := range map[string]string{
		"/system.slice/job-a.service":                                       "job-a.service",
		"/system.slice/job-a.service/sub":                                   "job-a.service",
		"/user.slice/user-1000.slice/user@1000.service/app.slice/x.service": "user@1000.service",
		"/user.slice/user-1000.slice/session-3.scope":                       "session-3.scope",
		"/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope":       "cri-containerd-ab.scope",
		"/":                        "",
		"/system.slice":            "",
		"/docker/0123abcd":         "",
		"/init.scope":              "init.scope",
		"/machine.slice/x.service": "x.service",
	} {
		if got := UnitOf(cgroup); got != want {
			t.Errorf("UnitOf(%q) = %q, want %q", cgroup, got, want)
		}
	}
}
