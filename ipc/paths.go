package ipc

import (
	"fmt"
	"os"
	"path/filepath"
)

// EnvSocket names the environment variable that overrides the socket path.
const EnvSocket = "TOKENAGENT_SOCKET"

// DefaultSocketPath is /run/tokenagent/agent.sock for root (system mode),
// else $XDG_RUNTIME_DIR/tokenagent/agent.sock, or, without
// XDG_RUNTIME_DIR, a per-user directory in the temporary directory.
func DefaultSocketPath() string {
	if os.Geteuid() == 0 {
		return SystemSocketPath
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "tokenagent", "agent.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tokenagent-%d", os.Geteuid()), "agent.sock")
}

// SystemSocketPath is where a system-wide agent (a service, a DaemonSet)
// listens.
const SystemSocketPath = "/run/tokenagent/agent.sock"

// SocketPath picks the daemon's socket: an explicit flag, then
// $TOKENAGENT_SOCKET, then the configuration's socket setting, then
// DefaultSocketPath.
func SocketPath(flag, configured string) string {
	for _, p := range []string{flag, os.Getenv(EnvSocket), configured} {
		if p != "" {
			return p
		}
	}
	return DefaultSocketPath()
}

// ClientSocketPath picks the socket a client dials, in the daemon's order
// (a flag, then $TOKENAGENT_SOCKET, then the default), except that a
// non-root user with no agent of their own reaches the system agent: the
// per-user socket is used only if it exists.
func ClientSocketPath(flag string) string {
	if p := SocketPath(flag, ""); p != DefaultSocketPath() || os.Geteuid() == 0 {
		return p
	}
	if _, err := os.Stat(DefaultSocketPath()); err == nil {
		return DefaultSocketPath()
	}
	return SystemSocketPath
}
