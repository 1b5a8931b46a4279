package door

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// scans bounds the process scans under way at once (socketHolder): each
// reads directories of /proc, and a storm of new connections from other
// users would otherwise run one per connection at once, each holding
// its listing. The others wait, holding nothing but their connection.
var scans = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// socketHolder finds the processes of uid that hold the socket inode
// (socket:[inode] among their /proc/PID/fd) and returns their effective
// gid and supplementary groups, as /proc/PID/status says: what the Unix
// socket learns from SO_PEERCRED and SO_PEERGROUPS. Only uid's processes
// are read, then root-owned entries (a process that is not dumpable shows
// as root's); the agent, root or the same user, may read them. When
// several processes hold the socket (a fork), the caller has only the
// groups they all have; holders counts them, and pid is the first.
func socketHolder(uid uint32, inode uint64) (gid uint32, groups []uint32, pid int32, holders int, err error) {
	scans <- struct{}{}
	defer func() { <-scans }()
	proc, err := os.Open("/proc")
	if err != nil {
		return 0, nil, 0, 0, resourceErr("open /proc", err)
	}
	names, err := proc.Readdirnames(-1)
	proc.Close()
	if err != nil {
		return 0, nil, 0, 0, resourceErr("read /proc", err)
	}
	target := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	found := false
	for _, owners := range []uint32{uid, 0} {
		for _, name := range names {
			if name[0] < '0' || name[0] > '9' {
				continue
			}
			var st syscall.Stat_t
			if syscall.Stat("/proc/"+name, &st) != nil || st.Uid != owners || !holds(name, target) {
				continue
			}
			euid, egid, gs, err := processIDs(name)
			if err != nil || euid != uid {
				continue
			}
			holders++
			if !found {
				gid, groups, found = egid, gs, true
				p, _ := strconv.Atoi(name)
				pid = int32(p)
				continue
			}
			if egid != gid {
				gid = noGroup
			}
			groups = slices.DeleteFunc(groups, func(g uint32) bool { return !slices.Contains(gs, g) })
		}
		if found || uid == 0 {
			break
		}
	}
	if !found {
		return 0, nil, 0, 0, fmt.Errorf("no process of uid %d holds the client's socket (inode %d) in this agent's /proc: is the agent in another PID namespace, or did the client pass its socket on?", uid, inode)
	}
	return gid, groups, pid, holders, nil
}

// holds reports whether process pid has target among its open files.
// A process may hold thousands: they are read a batch at a time, each
// link into one buffer, and the walk stops at the first match.
func holds(pid, target string) bool {
	dir := "/proc/" + pid + "/fd/"
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	var link [64]byte // "socket:[" + inode + "]" fits; a longer link is not target
	for {
		fds, err := f.Readdirnames(256)
		for _, fd := range fds {
			if n, err := syscall.Readlink(dir+fd, link[:]); err == nil && n < len(link) && string(link[:n]) == target {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
}

// processIDs reads a process's effective uid and gid and its groups from
// /proc/PID/status.
func processIDs(pid string) (euid, egid uint32, groups []uint32, err error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, nil, err
	}
	var haveUID, haveGID bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(value)
		switch key {
		case "Uid", "Gid":
			if len(f) < 2 {
				return 0, 0, nil, fmt.Errorf("/proc/%s/status: %s: %q", pid, key, value)
			}
			id, err := strconv.ParseUint(f[1], 10, 32) // real, effective, saved, fs
			if err != nil {
				return 0, 0, nil, fmt.Errorf("/proc/%s/status: %s: %w", pid, key, err)
			}
			if key == "Uid" {
				euid, haveUID = uint32(id), true
			} else {
				egid, haveGID = uint32(id), true
			}
		case "Groups":
			for _, g := range f {
				id, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return 0, 0, nil, fmt.Errorf("/proc/%s/status: Groups: %w", pid, err)
				}
				groups = append(groups, uint32(id))
			}
		}
	}
	if !haveUID || !haveGID {
		return 0, 0, nil, errors.New("/proc/" + pid + "/status has no Uid or Gid")
	}
	return euid, egid, groups, nil
}
