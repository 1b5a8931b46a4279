package ipc

import (
	"os"
	"path/filepath"
	"runtime"
)

// EnvSocket names the environment variable that overrides the socket path.
const EnvSocket = "TOKENAGENT_SOCKET"

// SystemSocketPath is where a system-wide agent (a service, a DaemonSet)
// listens on Linux and the other systems with a /run.
const SystemSocketPath = "/run/tokenagent/agent.sock"

// DarwinSystemSocketPath is where it listens on macOS, which has no /run.
const DarwinSystemSocketPath = "/var/run/tokenagent/agent.sock"

// SystemSocket is where a system-wide agent listens on this system:
// SystemSocketPath, or DarwinSystemSocketPath on macOS.
func SystemSocket() string { return systemSocketFor(runtime.GOOS) }

func systemSocketFor(goos string) string {
	if goos == "darwin" {
		return DarwinSystemSocketPath
	}
	return SystemSocketPath
}

// DefaultSocketPath is SystemSocket() for root (system mode), else
// $XDG_RUNTIME_DIR/tokenagent/agent.sock. Without XDG_RUNTIME_DIR
// (cron, sudo -u, a service with User=) a non-root user has no default:
// "" — never a directory in /tmp, where another user could have planted
// it first.
func DefaultSocketPath() string { return hostPaths().defaultSocket() }

// SocketPath picks the daemon's socket: an explicit flag, then
// $TOKENAGENT_SOCKET, then the configuration's socket setting, then
// DefaultSocketPath ("" when there is none: the daemon says so).
func SocketPath(flag, configured string) string { return hostPaths().socket(flag, configured) }

// ClientSocketPath picks the socket a client dials: a flag, then
// $TOKENAGENT_SOCKET, then the default, except that a non-root user with
// no agent of their own (no per-user socket, or no XDG_RUNTIME_DIR)
// reaches the system agent.
func ClientSocketPath(flag string) string { return hostPaths().clientSocket(flag) }

// SocketHint is the line a client needs to find an agent serving socket,
// when its own search (--socket, $TOKENAGENT_SOCKET, then the defaults)
// would not find it without help: "export TOKENAGENT_SOCKET=…"; else "".
// The CLI does not read the agent's configuration, so a socket set there
// is found only this way.
func SocketHint(socket string) string { return hostPaths().socketHint(socket) }

func (p paths) socketHint(socket string) string {
	if socket == p.defaultSocket() || socket == systemSocketFor(p.goos) {
		return ""
	}
	return "export " + EnvSocket + "=" + socket
}

// paths resolves socket paths from what the process knows about itself;
// tests build one for any user and environment.
type paths struct {
	goos   string // runtime.GOOS, or the system a test stands for
	euid   int
	getenv func(string) string
	exists func(string) bool
}

func hostPaths() paths {
	return paths{goos: runtime.GOOS, euid: os.Geteuid(), getenv: os.Getenv, exists: func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	}}
}

func (p paths) defaultSocket() string {
	if p.euid == 0 {
		return systemSocketFor(p.goos)
	}
	if dir := p.getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "tokenagent", "agent.sock")
	}
	return ""
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
	if s != "" && (s != p.defaultSocket() || p.euid == 0 || p.exists(s)) {
		return s
	}
	return systemSocketFor(p.goos)
}
