package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/tokenagent/tokenagent/ipc"
)

// AllowEntry is one [[profiles.NAME.allow]] table: selectors of a caller
// that must all match. The process selectors (Unit, Cgroup, Exe,
// SHA256) are read from the caller's process, pinned by pidfd when it
// connected; a caller whose process cannot be pinned or read matches no
// entry that has one.
type AllowEntry struct {
	// UID or User: the caller's uid.
	UID  *uint32 `toml:"uid"`
	User string  `toml:"user"`
	// GID or Group: the caller's primary or a supplementary group.
	GID   *uint32 `toml:"gid"`
	Group string  `toml:"group"`
	// Unit is the systemd unit the caller's process runs in, as systemd
	// names it from the process's cgroup ("job-a.service").
	Unit string `toml:"unit"`
	// Cgroup is a cgroup v2 path prefix, whole path elements only
	// ("/kubepods.slice/kubepods-pod1234.slice" admits every container of
	// that pod), as the agent's cgroup namespace sees it.
	Cgroup string `toml:"cgroup"`
	// Exe is the absolute path of the caller's executable.
	Exe string `toml:"exe"`
	// SHA256 is the hex SHA-256 of the caller's executable.
	SHA256 string `toml:"sha256"`
}

// HasProcessSelector reports whether the entry reads the caller's
// process (unit, cgroup, exe or sha256), not only its credentials.
func (a AllowEntry) HasProcessSelector() bool {
	return a.Unit != "" || a.Cgroup != "" || a.Exe != "" || a.SHA256 != ""
}

func (a AllowEntry) validate() error {
	var errs []error
	if a.UID == nil && a.User == "" && a.GID == nil && a.Group == "" && !a.HasProcessSelector() {
		return errors.New("an entry with no selector would admit every caller; set uid, user, gid, group, unit, cgroup, exe or sha256")
	}
	if a.UID != nil && a.User != "" {
		errs = append(errs, errors.New("set uid or user, not both"))
	}
	if a.GID != nil && a.Group != "" {
		errs = append(errs, errors.New("set gid or group, not both"))
	}
	if a.Unit != "" && (strings.Contains(a.Unit, "/") || ipc.UnitType(a.Unit) == "") {
		errs = append(errs, fmt.Errorf("unit %q: name a systemd unit, such as \"job-a.service\" or \"session-1.scope\"", ipc.SafeText(a.Unit)))
	}
	if a.Cgroup != "" && (!path.IsAbs(a.Cgroup) || path.Clean(a.Cgroup) != a.Cgroup || a.Cgroup == "/") {
		errs = append(errs, fmt.Errorf("cgroup %q: use an absolute, clean cgroup path other than / (as in /proc/PID/cgroup, such as \"/system.slice/job-a.service\")", ipc.SafeText(a.Cgroup)))
	}
	if a.Exe != "" && (!path.IsAbs(a.Exe) || path.Clean(a.Exe) != a.Exe) {
		errs = append(errs, fmt.Errorf("exe %q: use the executable's absolute, clean path (as /proc/PID/exe shows it)", ipc.SafeText(a.Exe)))
	}
	if a.SHA256 != "" {
		if b, err := hex.DecodeString(a.SHA256); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("sha256 %q: use the 64 hex digits of `sha256sum EXECUTABLE`", ipc.SafeText(a.SHA256)))
		}
	}
	return errors.Join(errs...)
}
