package tokenendpoint_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
	"github.com/tokenagent/tokenagent/ipc/tokenendpoint"
)

// The attacks of issue 22 on the token endpoint, each by a real process of
// another uid over real sockets.

const strongLocalSecret = "c3Ryb25nLWxvY2FsLXNlY3JldC1mb3ItYXR0YWNrcw"

// agentBackend serves a running agent to an endpoint of the test's own.
type agentBackend struct{ a *agent.Agent }

func (b agentBackend) Match(c *ipc.Caller, q ipc.ClientMatch) (string, error) { return b.a.Match(c, q) }
func (b agentBackend) MayUseAny(c ipc.Caller) bool                            { return b.a.MayUseAny(c) }
func (b agentBackend) Token(ctx context.Context, c ipc.Caller, p string) (*ipc.TokenResponse, error) {
	tok, err := b.a.Token(ctx, c, p, 0)
	if err != nil {
		return nil, err
	}
	return &ipc.TokenResponse{AccessToken: tok.AccessToken, TokenType: tok.TokenType, ExpiresIn: 60}, nil
}

// gatedListener accepts only once open is closed: the test decides when
// the agent asks the kernel who a client is.
type gatedListener struct {
	net.Listener
	open chan struct{}
}

func (g gatedListener) Accept() (net.Conn, error) {
	<-g.open
	return g.Listener.Accept()
}

// TestUnidentifiedLoopbackCallerIsRefused (issue 22, attack 1): a user who
// sends a token request with a profile's local_secret and hangs up before
// the agent asks who it is leaves a socket no process holds, which the
// kernel cannot place: an unidentified caller. Before, it was served like
// a caller from another network namespace, the allow lists bypassed. Now
// it is refused (401, the reason in the log) unless the configuration
// says such callers are expected (token_endpoint_unidentified =
// "local_secret"); and it is never logged as uid 0.
func TestUnidentifiedLoopbackCallerIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	r := startAgent(t, `allow_uids = [4242]
local_secret = "`+strongLocalSecret+`"`)
	form := "grant_type=client_credentials&client_id=zeebe&audience=zeebe-api&client_secret=" + url.QueryEscape(strongLocalSecret)
	// The agent holds a token: a client that hung up would be served it
	// without waiting for the IdP.
	if status, body := post(t, r.TokenEndpoint, form); status != 200 {
		t.Fatalf("root: %d %s", status, body)
	}
	for _, tc := range []struct {
		name        string
		bySecret    bool
		wantStatus  int
		wantInCause string
	}{
		{"refuse (default)", false, 401, "token_endpoint_unidentified"},
		{"local_secret", true, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
				ln, err := net.Listen("tcp", network)
				if err != nil {
					t.Logf("%s: %v (skipped)", network, err)
					continue
				}
				events := make(chan door.RequestEvent, 1)
				srv := tokenendpoint.New(tokenendpoint.Config{Backend: agentBackend{r.Agent}, AgentUID: uint32(os.Geteuid()),
					UnidentifiedByLocalSecret: tc.bySecret, Observe: func(ev door.RequestEvent) { events <- ev }})
				gate := gatedListener{ln, make(chan struct{})}
				go srv.Serve(door.Limit(gate, door.ListenConfig{}, door.TCPCaller))
				runAs(t, 2, nil, "TOKENENDPOINT_TEST_HANG_UP="+ln.Addr().String(), "TOKENENDPOINT_TEST_FORM="+form)
				close(gate.open)
				ev := <-events
				srv.Close()
				if ev.Status != tc.wantStatus || !ev.Unidentified || ev.Caller.UID != 0 || !strings.Contains(ev.Detail, tc.wantInCause) {
					t.Errorf("%s: a caller who hung up: status %d, unidentified %t, uid %d, detail %q; want %d, unidentified, %q in the detail",
						network, ev.Status, ev.Unidentified, ev.Caller.UID, ev.Detail, tc.wantStatus, tc.wantInCause)
				}
				if strings.Contains(ev.Detail+ev.Reason, strongLocalSecret) {
					t.Errorf("%s: the event holds the local secret", network)
				}
			}
		})
	}
}

// TestGroupsAreTheCallingProcesss (issue 22, attack 7): over TCP, a
// caller's groups are its process's, as on the Unix socket, not the user
// database's: a process that dropped a group it has in /etc/group is
// refused a profile allowed to that group, and one given a group it does
// not have there is served. Before, it was the other way round.
func TestGroupsAreTheCallingProcesss(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as other users")
	}
	const group = 4343 // a gid no user has in /etc/group
	r := startAgent(t, "allow_gids = ["+strconv.Itoa(group)+"]")
	form := "grant_type=client_credentials&client_id=zeebe&audience=zeebe-api"
	post := "TOKENENDPOINT_TEST_POST=" + r.TokenEndpoint
	if a := runAs(t, 2, []uint32{group}, post, "TOKENENDPOINT_TEST_FORM="+form); a.status != 200 {
		t.Errorf("uid 2 given gid %d: %d %s, want a token", group, a.status, a.body)
	}
	if a := runAs(t, 2, nil, post, "TOKENENDPOINT_TEST_FORM="+form); a.status != 401 {
		t.Errorf("uid 2 without gid %d: %d, want 401", group, a.status)
	}
	// A user who is a member of a group in /etc/group but whose process
	// dropped it.
	member, gid := groupMember(t)
	if member < 0 {
		t.Log("no user with a supplementary group in /etc/group: the dropped-group case is skipped")
		return
	}
	r = startAgent(t, "allow_gids = ["+strconv.Itoa(int(gid))+"]")
	post = "TOKENENDPOINT_TEST_POST=" + r.TokenEndpoint
	if a := runAs(t, member, nil, post, "TOKENENDPOINT_TEST_FORM="+form); a.status != 401 {
		t.Errorf("uid %d, member of gid %d in /etc/group, with its groups dropped: %d, want 401", member, gid, a.status)
	}
	if a := runAs(t, member, []uint32{gid}, post, "TOKENENDPOINT_TEST_FORM="+form); a.status != 200 {
		t.Errorf("uid %d with gid %d: %d %s, want a token", member, gid, a.status, a.body)
	}
}

// groupMember finds a user (not root, not the overflow uid) with a
// supplementary group in the user database; -1 when there is none.
func groupMember(t *testing.T) (uid int, gid uint32) {
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		return -1, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 || f[3] == "" {
			continue
		}
		g, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		for _, name := range strings.Split(f[3], ",") {
			u, err := user.Lookup(name)
			if err != nil {
				continue
			}
			id, _ := strconv.Atoi(u.Uid)
			if id != 0 && uint32(id) != ipc.OverflowUID() && u.Gid != f[2] {
				return id, uint32(g)
			}
		}
	}
	return -1, 0
}

// TestRefusedCallersConnectionIsClosed (issue 22, attack 9): a user who
// may use no profile gets its answer over TCP and a closed connection
// (Connection: close), as on the socket, not one to hold for minutes.
func TestRefusedCallersConnectionIsClosed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as other users")
	}
	r := startAgent(t, "allow_uids = [2]")
	form := "TOKENENDPOINT_TEST_FORM=grant_type=client_credentials&client_id=zeebe&audience=zeebe-api"
	if a := runAs(t, 1, nil, "TOKENENDPOINT_TEST_POST="+r.TokenEndpoint, form); a.status != 401 || !a.closed {
		t.Errorf("uid 1, allowed nothing: %d, connection closed %t; want 401 and Connection: close", a.status, a.closed)
	}
	if a := runAs(t, 2, nil, "TOKENENDPOINT_TEST_POST="+r.TokenEndpoint, form); a.status != 200 || a.closed {
		t.Errorf("uid 2, allowed: %d, connection closed %t; want a token on a connection kept open", a.status, a.closed)
	}
}
