//go:build unix

package sink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// dir is an open, checked directory and the path it was reached by (the
// real one: links on the way resolved).
type dir struct {
	fd   int // -1: missing (openDir without create)
	path string
}

func (d dir) close() { unix.Close(d.fd) }

// maxLinks bounds the links followed on the way, as the kernel's 40 does.
const maxLinks = 40

// openDir opens the sink directory path relative to / component by
// component, never following a link it does not trust, and checks each
// directory through its descriptor (see the package's Trust section).
// With create, a missing component is made (0750, the agent's own) under
// its checked parent; without, a missing one is returned as dir{fd: -1}
// once its nearest existing parent passed.
func openDir(path string, create bool) (dir, error) {
	if !filepath.IsAbs(path) {
		return dir{fd: -1}, fmt.Errorf("file sink directory %s: not an absolute path", path)
	}
	uid := os.Geteuid()
	want := filepath.Clean(path)
	rest := components(want)
	for links := 0; ; {
		d, target, err := walk(want, rest, uid, create)
		if err != nil || target == nil {
			return d, err
		}
		if links++; links > maxLinks {
			return dir{fd: -1}, fmt.Errorf("file sink directory %s: too many links on the way", want)
		}
		rest = target
	}
}

// walk opens rest from /. It returns the components to walk instead when
// it meets a trusted link on the way.
func walk(want string, rest []string, uid int, create bool) (dir, []string, error) {
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return dir{fd: -1}, nil, fmt.Errorf("file sink directory %s: open /: %w", want, err)
	}
	cur := "/"
	if err := checkDir(fd, cur, want, uid); err != nil {
		unix.Close(fd)
		return dir{fd: -1}, nil, err
	}
	for i, name := range rest {
		last := i == len(rest)-1
		next := filepath.Join(cur, name)
		flags := unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_RDONLY
		if !last {
			flags = flags&^unix.O_RDONLY | pathOnly // a directory passed through need not be readable
		}
		nfd, err := unix.Openat(fd, name, flags, 0)
		if errors.Is(err, unix.ENOENT) {
			if !create {
				unix.Close(fd)
				return dir{fd: -1, path: next}, nil, nil
			}
			made := unix.Mkdirat(fd, name, 0o750)
			if made != nil && !errors.Is(made, unix.EEXIST) {
				unix.Close(fd)
				return dir{fd: -1}, nil, fmt.Errorf("file sink directory %s: make %s: %w", want, next, made)
			}
			nfd, err = unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
			if err == nil && made == nil {
				err = unix.Fchmod(nfd, 0o750) // whatever the umask; ours, so the checks below pass
			}
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			target, lerr := trustedLink(fd, cur, name, want, uid, last)
			unix.Close(fd)
			if lerr != nil {
				return dir{fd: -1}, nil, lerr
			}
			return dir{fd: -1}, append(target, rest[i+1:]...), nil
		}
		unix.Close(fd)
		if err != nil {
			return dir{fd: -1}, nil, fmt.Errorf("file sink directory %s: open %s: %w", want, next, err)
		}
		fd, cur = nfd, next
		if err := checkDir(fd, cur, want, uid); err != nil {
			unix.Close(fd)
			return dir{fd: -1}, nil, err
		}
	}
	return dir{fd: fd, path: cur}, nil, nil
}

// trustedLink reads the link name in the checked directory parent (path
// cur) if the agent may follow it, and returns the components of its
// target. The sink directory itself (last) is never a link; one on the
// way must be root's or the agent's user's.
func trustedLink(parent int, cur, name, want string, uid int, last bool) ([]string, error) {
	at := filepath.Join(cur, name)
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("file sink directory %s: %s: %w", want, at, err)
	}
	if uint32(st.Mode)&unix.S_IFMT != unix.S_IFLNK {
		return nil, fmt.Errorf("file sink directory %s: %s is not a directory (owner %s, mode %04o)", want, at, describeUID(int(st.Uid)), uint32(st.Mode)&0o7777)
	}
	owner := int(st.Uid)
	if last {
		return nil, fmt.Errorf("file sink directory %s is a symbolic link (owner %s); the agent writes tokens only into a real directory, never through a link. "+
			"Remove the link (rm %s) and let the agent make the directory, or point path at a directory owned by %s or root that group and others cannot write",
			at, describeUID(owner), at, describeUID(uid))
	}
	if owner != 0 && owner != uid {
		return nil, fmt.Errorf("%s, on the way to file sink directory %s, is a symbolic link owned by %s; the agent follows only links that root or %s made. "+
			"Give path without links (the real directory), or replace the link", at, want, describeUID(owner), describeUID(uid))
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(parent, name, buf)
	if err != nil {
		return nil, fmt.Errorf("file sink directory %s: read link %s: %w", want, at, err)
	}
	target := string(buf[:n])
	if !filepath.IsAbs(target) {
		target = filepath.Join(cur, target) // cur has no links: ".." in the target is lexical
	}
	return components(filepath.Clean(target)), nil
}

// checkDir refuses a directory another user could change (fd, reached as
// path on the way to the sink directory want): owned by someone other
// than uid or root, or writable by group or others — which a sticky bit
// excuses above the sink directory, never in it.
func checkDir(fd int, path, want string, uid int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("file sink directory %s: %s: %w", want, path, err)
	}
	owner, mode := int(st.Uid), uint32(st.Mode)
	sticky := mode&unix.S_ISVTX != 0
	shared := mode&0o022 != 0 && (path == want || !sticky)
	if owner == 0 || owner == uid {
		if !shared {
			return nil
		}
	}
	at := "file sink directory " + path
	if path != want {
		at = fmt.Sprintf("%s, above file sink directory %s,", path, want)
	}
	why := "is owned by " + describeUID(owner)
	if owner == 0 || owner == uid {
		why = "is writable by group or others"
		if sticky {
			why += " (a sticky bit does not protect the token files in it)"
		}
	}
	return fmt.Errorf("%s %s (owner %s, mode %04o); another user could replace or redirect the token files there. "+
		"Use a directory owned by %s or root that group and others cannot write (chown, chmod 0750), or remove it and let the agent make it",
		at, why, describeUID(owner), mode&0o7777, describeUID(uid))
}

// components splits a clean absolute path into its names.
func components(path string) []string {
	var out []string
	for _, c := range strings.Split(path, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}
