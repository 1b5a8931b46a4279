package clientlib

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/tokenagent/tokenagent/ipc"
)

// EnvAgentUID names the environment variable that lists further uids
// (comma-separated) that may serve tokens to this process, for an agent
// that runs as neither root, this user nor the system agent's user — a
// DaemonSet under its own uid, say.
const EnvAgentUID = "TOKENAGENT_AGENT_UID"

// systemAgentUser is the system agent's user, where it exists.
func systemAgentUser() string {
	if runtime.GOOS == "darwin" {
		return "_tokenagent"
	}
	return "tokenagent"
}

var systemAgentUID = sync.OnceValues(func() (int, bool) { return lookupUID(systemAgentUser()) })

// checkServer verifies who serves the socket before anything is asked of
// it: root, this process's user, the system agent's user, or a uid named
// in Client.AgentUIDs or $TOKENAGENT_AGENT_UID. Anyone else could be
// another local user's fake agent, handing out tokens of their choosing.
func (c *Client) checkServer(conn net.Conn) error {
	uid, known, err := peerUID(conn)
	if err != nil {
		return &Error{Kind: ErrAgentUnavailable, Description: fmt.Sprintf("cannot tell who serves %s (%v); refusing to use it", c.socket, err)}
	}
	if !known || c.trusts(uid) {
		return nil
	}
	return &Error{Kind: ErrAgentUnavailable, Description: fmt.Sprintf(
		"the process serving %s runs as uid %d, which is neither root, you (uid %d) nor the %s user: "+
			"it may be another user's fake agent, so nothing was asked of it. If it is the agent you mean "+
			"(one running under its own uid, as a DaemonSet may), set %s=%d",
		c.socket, uid, os.Geteuid(), systemAgentUser(), EnvAgentUID, uid)}
}

func (c *Client) trusts(uid int) bool {
	for _, id := range c.AgentUIDs {
		if id == uid {
			return true
		}
	}
	for _, s := range strings.Split(os.Getenv(EnvAgentUID), ",") {
		if id, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && id == uid {
			return true
		}
	}
	if uid == 0 {
		return true
	}
	if uid == int(ipc.OverflowUID()) { // whoever it is, it is not known to be us
		return false
	}
	if uid == os.Geteuid() {
		return true
	}
	sys, ok := systemAgentUID()
	return ok && uid == sys
}
