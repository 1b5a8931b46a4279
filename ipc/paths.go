package ipc

import (
	"fmt"
	"os"
	"path/filepath"
)

// EnvSocket names the environment variable that overrides the socket path.
const EnvSocket = "TOKENAGENT_SOCKET"

// SystemSocketPath is where a system-wide agent (a service, a DaemonSet)
// listens.
const SystemSocketPath = "/run/tokenagent/agent.sock"

// DefaultSocketPath is /run/tokenagent/agent.sock for root (system mode),
// else $XDG_RUNTIME_DIR/tokenagent/agent.sock, or, without
// XDG_RUNTIME_DIR, a per-user directory in the temporary directory.
func DefaultSocketPath() string { return hostPaths().defaultSocket() }

// SocketPath picks the daemon's socket: an explicit flag, then
// $TOKENAGENT_SOCKET, then the configuration's socket setting, then
// DefaultSocketPath.
func SocketPath(flag, configured string) string { return hostPaths().socket(flag, configured) }

// ClientSocketPath picks the socket a client dials, in the daemon's order
// (a flag, then $TOKENAGENT_SOCKET, then the default), except that a
// non-root user with no agent of their own reaches the system agent: the
// per-user socket is used only if it exists.
func ClientSocketPath(flag string) string { return hostPaths().clientSocket(flag) }

// paths resolves socket paths from what the process knows about itself;
// tests build one for any user and environment.
type paths struct {
	euid   int
	getenv func(string) string
	exists func(string) bool
	tmp    string
}

func hostPaths() paths {
	return paths{euid: os.Geteuid(), getenv: os.Getenv, tmp: os.TempDir(), exists: func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	}}
}

func (p paths) defaultSocket() string {
	if p.euid == 0 {
		return SystemSocketPath
	}
	if dir := p.getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "tokenagent", "agent.sock")
	}
	return filepath.Join(p.tmp, fmt.Sprintf("tokenagent-%d", p.euid), "agent.sock")
}

func (p paths) socket(flag, configured string) string {
	for _, s := range []string{flag, p.getenv(EnvSocket), configured} {
		if s != "" {
			return s
		}
	}
	return p.defaultSocket()
}

func (p paths) clientSocket(flag string) string {
	s := p.socket(flag, "")
	if s != p.defaultSocket() || p.euid == 0 || p.exists(s) {
		return s
	}
	return SystemSocketPath
}
