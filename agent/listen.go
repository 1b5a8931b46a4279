package agent

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"

	"github.com/tokenagent/tokenagent/ipc"
)

// DefaultSocketGroup is the socket's group in system mode when it exists.
const DefaultSocketGroup = "tokenagent"

// socketMode parses socket_mode.
func (c *Config) socketMode() (fs.FileMode, error) {
	v, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode such as \"0660\"", c.SocketMode)
	}
	if v&0o600 != 0o600 {
		return 0, fmt.Errorf("%q: the owner needs read and write (0600 at least)", c.SocketMode)
	}
	return fs.FileMode(v), nil
}

// Listen creates the agent's socket at path as the configuration says:
// socket_mode and socket_group, or the defaults for the mode (0600 for a
// user agent; 0660 and group tokenagent for root when that group exists).
func (c *Config) Listen(path string) (net.Listener, error) {
	lc := ipc.ListenConfig{Mode: 0o600, GID: -1, MaxConnections: c.MaxConnections}
	group := c.SocketGroup
	if group == "" && os.Geteuid() == 0 {
		if _, err := lookupGID(DefaultSocketGroup); err == nil {
			group = DefaultSocketGroup
			lc.Mode = 0o660
		}
	}
	if group != "" {
		gid, err := lookupGID(group)
		if err != nil {
			return nil, fmt.Errorf("socket_group: %w", err)
		}
		lc.GID = int(gid)
	}
	if c.SocketMode != "" {
		mode, err := c.socketMode()
		if err != nil {
			return nil, fmt.Errorf("socket_mode: %w", err)
		}
		lc.Mode = mode
	}
	return ipc.Listen(path, lc)
}
