package daemon

import (
	"fmt"
	"net"
	"os"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// DefaultSocketGroup is the socket's group in system mode when it exists.
const DefaultSocketGroup = "tokenagent"

// listen creates the agent's socket at path as the configuration says:
// socket_mode and socket_group, or the defaults for the mode (0600 for a
// user agent; 0660 and group tokenagent for root when that group exists).
// The group is looked up here, at start, not when the file is parsed.
func listen(cfg *config.Config, a *agent.Agent, path string) (net.Listener, error) {
	lc := connectionLimits(cfg, a)
	lc.Mode, lc.GID = 0o600, -1
	group := cfg.SocketGroup
	if group == "" && os.Geteuid() == 0 {
		if _, err := agent.LookupGID(DefaultSocketGroup); err == nil {
			group = DefaultSocketGroup
			lc.Mode = 0o660
		}
	}
	if group != "" {
		gid, err := agent.LookupGID(group)
		if err != nil {
			return nil, fmt.Errorf("config %s: socket_group: %w", cfg.Path(), err)
		}
		lc.GID = int(gid)
	}
	mode, err := cfg.SocketFileMode()
	if err != nil {
		return nil, fmt.Errorf("config %s: socket_mode: %w", cfg.Path(), err)
	}
	if mode != 0 {
		lc.Mode = mode
	}
	return door.Listen(path, lc)
}

// connectionLimits are the caps every door applies: in all, per uid, and
// who is never refused (root and the agent's own user); and whether
// callers' processes are pinned as they connect (while a profile of a's
// has a process selector, reloads included).
func connectionLimits(cfg *config.Config, a *agent.Agent) door.ListenConfig {
	return door.ListenConfig{MaxConnections: cfg.MaxConnections, MaxConnectionsPerUID: cfg.MaxConnectionsPerUID, AgentUID: uint32(os.Geteuid()),
		Pin: a.PinsProcesses}
}
