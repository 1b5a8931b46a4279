package door

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// Activated is a listening socket systemd passed to the agent (socket
// activation).
type Activated struct {
	// Name is the socket's FileDescriptorName= in the .socket unit
	// (systemd's default is the unit's name).
	Name     string
	Listener net.Listener
}

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// ActivatedListeners takes the listening sockets systemd passed to this
// process, as sd_listen_fds(3) does: LISTEN_PID must be this process (a
// child that inherited the variables takes nothing), LISTEN_FDS sockets
// follow from descriptor 3 on, LISTEN_FDNAMES names them, colon-separated.
// The three variables are removed from the environment so that no child
// takes the sockets for its own. The passed descriptors are closed once
// duplicated into listeners (close-on-exec, as Go's own are).
func ActivatedListeners() ([]Activated, error) {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	n, fdNames, err := parseListenEnv(pid, fds, names, os.Getpid())
	if err != nil || n == 0 {
		return nil, err
	}
	var out []Activated
	for i := range n {
		fd := listenFDsStart + i
		f := os.NewFile(uintptr(fd), "LISTEN_FDS#"+strconv.Itoa(i))
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, a := range out {
				a.Listener.Close()
			}
			return nil, fmt.Errorf("socket activation: descriptor %d (%q) is not a listening socket: %w", fd, fdNames[i], err)
		}
		out = append(out, Activated{Name: fdNames[i], Listener: ln})
	}
	return out, nil
}

// parseListenEnv reads the three variables for the process self: how
// many descriptors were passed and each one's name ("" when unnamed).
// Variables meant for another process mean none.
func parseListenEnv(pid, fds, names string, self int) (int, []string, error) {
	if pid == "" && fds == "" {
		return 0, nil, nil
	}
	if p, err := strconv.Atoi(pid); err != nil || p != self {
		return 0, nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 || n > 1024 {
		return 0, nil, fmt.Errorf("socket activation: LISTEN_FDS=%q is not a count of descriptors", fds)
	}
	fdNames := make([]string, n)
	if names != "" {
		given := strings.Split(names, ":")
		if len(given) != n {
			return 0, nil, errors.New("socket activation: LISTEN_FDNAMES=" + strconv.Quote(names) + " does not name LISTEN_FDS=" + fds + " descriptors")
		}
		copy(fdNames, given)
	}
	return n, fdNames, nil
}
