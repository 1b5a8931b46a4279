//go:build !darwin

package clientlib

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// lookupUID finds a local user's uid in /etc/passwd, where system users
// such as tokenagent (systemd-sysusers, useradd --system) live. It does
// not use os/user: that package, linked into the CLI, costs every start
// more than this file does (docs/benchmarks.md).
func lookupUID(name string) (int, bool) {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), ":", 4)
		if len(fields) == 4 && fields[0] == name {
			uid, err := strconv.Atoi(fields[2])
			return uid, err == nil
		}
	}
	return 0, false
}

// lookupGroup finds a group's name in /etc/group (see lookupUID).
func lookupGroup(gid uint32) (string, bool) {
	f, err := os.Open("/etc/group")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := strconv.FormatUint(uint64(gid), 10)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), ":", 4)
		if len(fields) >= 3 && fields[2] == want {
			return fields[0], true
		}
	}
	return "", false
}
