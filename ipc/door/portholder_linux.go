package door

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

// PortHolder names who listens on the TCP port of ap — the uid (and user
// name) the kernel's tables show, and the process (pid and command) that
// has the socket open when this process may read its descriptors — for
// the log line and health entry of a door that cannot bind. "" when no
// listening socket is found. A listener on the wildcard address of the
// family holds the port too.
func PortHolder(ap netip.AddrPort) string {
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			f := strings.Fields(sc.Text())
			if len(f) < 10 || f[3] != "0A" { // TCP_LISTEN
				continue
			}
			local, err := parseProcAddr(f[1])
			if err != nil || local.Port() != ap.Port() {
				continue
			}
			if a := local.Addr().Unmap(); a != ap.Addr().Unmap() && !a.IsUnspecified() {
				continue
			}
			who := "uid " + f[7]
			if u, err := user.LookupId(f[7]); err == nil {
				who += " (" + u.Username + ")"
			}
			if pid, comm := socketProcess(f[9]); pid != "" {
				who += fmt.Sprintf(", pid %s (%s)", pid, comm)
			}
			return who
		}
	}
	return ""
}

// socketProcess finds a process that has the socket with this inode open
// (its pid and command), among those whose descriptors this process may
// read; "" when none is found.
func socketProcess(inode string) (pid, comm string) {
	if inode == "0" {
		return "", ""
	}
	target := "socket:[" + inode + "]"
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && link == target {
			pid = strings.Split(fd, "/")[2]
			name, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
			return pid, strings.TrimSpace(string(name))
		}
	}
	return "", ""
}
