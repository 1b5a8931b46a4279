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
		return "/run/tokenagent/agent.sock"
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "tokenagent", "agent.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tokenagent-%d", os.Geteuid()), "agent.sock")
}

// SocketPath picks the socket in the order daemon and clients share: an
// explicit flag, then $TOKENAGENT_SOCKET, then the configuration's socket
// setting, then DefaultSocketPath.
func SocketPath(flag, configured string) string {
	for _, p := range []string{flag, os.Getenv(EnvSocket), configured} {
		if p != "" {
			return p
		}
	}
	return DefaultSocketPath()
}
