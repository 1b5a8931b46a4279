package clientlib_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/localapi"
)

// vocabularySocketEnv makes the test binary the socket-side client of
// TestSameErrorsBothSides (see TestMain).
const vocabularySocketEnv = "TOKENAGENT_TEST_VOCABULARY_SOCKET"

// otherUID is the caller's uid when the test runs as root: a user with no
// rights of its own (not the agent's, not root, not the overflow uid).
const otherUID = 4242

// sentinels are the answers a caller may branch on.
var sentinels = []struct {
	name string
	err  error
}{
	{"ErrAgentUnavailable", clientlib.ErrAgentUnavailable},
	{"ErrBadRequest", clientlib.ErrBadRequest},
	{"ErrForbidden", clientlib.ErrForbidden},
	{"ErrUnknownProfile", clientlib.ErrUnknownProfile},
	{"ErrNotFound", clientlib.ErrNotFound},
	{"ErrMinValid", clientlib.ErrMinValid},
	{"ErrIdPRefused", clientlib.ErrIdPRefused},
	{"ErrIdPUnavailable", clientlib.ErrIdPUnavailable},
	{"ErrShuttingDown", clientlib.ErrShuttingDown},
	{"ErrTimeout", clientlib.ErrTimeout},
}

// answer is what a caller can tell from an error: which sentinels it is,
// its wire code, and whether it says when to retry.
type answer struct {
	Is       []string `json:"is"`
	Code     string   `json:"code"`
	Retry    bool     `json:"retry"`
	Internal string   `json:"-"` // the error's text, for failure messages
}

func answerOf(err error) answer {
	a := answer{Is: []string{}}
	if err != nil {
		a.Internal = err.Error()
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			a.Is = append(a.Is, s.name)
		}
	}
	var ce *clientlib.Error
	var ie *ipc.Error
	switch {
	case errors.As(err, &ce):
		a.Code, a.Retry = ce.Code, ce.RetryAfter > 0
	case errors.As(err, &ie):
		a.Code, a.Retry = ie.WireCode(), ie.RetryAfter > 0
	}
	return a
}

// vocabularyCase is one failure, asked of the engine (or, for an
// endpoint, of the route parser) in process and of clientlib over the
// socket.
type vocabularyCase struct {
	name      string
	inProcess func(ctx context.Context, r *agenttest.Running, caller ipc.Caller) error
	socket    func(ctx context.Context, c *clientlib.Client) error
}

// tokenCase asks for a token of profile with at least minValid left.
func tokenCase(name, profile string, minValid time.Duration) vocabularyCase {
	return vocabularyCase{name,
		func(ctx context.Context, r *agenttest.Running, caller ipc.Caller) error {
			_, err := r.Agent.Token(ctx, caller, profile, minValid)
			return err
		},
		func(ctx context.Context, c *clientlib.Client) error {
			_, err := c.Token(ctx, profile, clientlib.WithMinValid(minValid))
			return err
		}}
}

// vocabularyCases are the failures; "shutting down" comes last, on its
// own (see the test).
var vocabularyCases = []vocabularyCase{
	tokenCase("unknown profile", "nope", 0),
	tokenCase("denied", "denied", 0),
	tokenCase("IdP refused", "refused", 0),
	tokenCase("IdP unavailable", "down", 0),
	tokenCase("min_valid unmeetable", "p", 23*time.Hour),
	{"unknown endpoint",
		func(context.Context, *agenttest.Running, ipc.Caller) error {
			_, err := localapi.ParseRoute("GET", "/v1/nope", "")
			return err
		},
		func(ctx context.Context, c *clientlib.Client) error { return clientlib.Get(ctx, c, "/v1/nope") }},
	{"wrong method",
		func(context.Context, *agenttest.Running, ipc.Caller) error {
			_, err := localapi.ParseRoute("DELETE", "/v1/profiles", "")
			return err
		},
		func(ctx context.Context, c *clientlib.Client) error {
			return clientlib.Get(ctx, c, "/v1/tokens/p/refresh") // refresh is POST
		}},
}

const shuttingDown = "shutting down"

// vocabularyClient is the child: it asks the agent at sock each case's
// question through clientlib and prints one JSON answer per line; then
// "waiting", and the answer to a request for the profile whose IdP never
// answers, which the agent's shutdown ends.
func vocabularyClient(sock string) int {
	c := &clientlib.Client{Socket: sock}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	enc := json.NewEncoder(os.Stdout)
	for _, tc := range vocabularyCases {
		enc.Encode(answerOf(tc.socket(ctx, c)))
	}
	fmt.Println("waiting")
	_, err := c.Token(ctx, "slow")
	enc.Encode(answerOf(err))
	return 0
}

// TestSameErrorsBothSides: every failure a caller branches on gets the
// same errors.Is answers, wire code and retry hint whether the engine is
// asked in process or over the socket through clientlib — by a process
// of another uid when the test runs as root, so that a denied profile is
// a real denial.
func TestSameErrorsBothSides(t *testing.T) {
	uid := uint32(os.Geteuid())
	if uid == 0 {
		uid = otherUID
	}
	slowIdP := idptest.New()
	defer slowIdP.Close()
	slowIdP.AddClient(idptest.Client{ID: "c", Secret: "vocabulary-secret", Method: "client_secret_basic"})
	never := make(chan struct{})
	defer close(never)
	slowIdP.SetFault(idptest.Fault{Hold: never})

	profile := func(name, tokenURL, secret string, allow uint32) string {
		return fmt.Sprintf("[profiles.%s]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = %q\nallow_uids = [%d]\n\n", name, tokenURL, secret, allow)
	}
	r, err := agenttest.StartWith(`socket_mode = "0666"
`+profile("p", "IDP", "vocabulary-secret", uid)+
		profile("denied", "IDP", "vocabulary-secret", uid+1)+
		profile("refused", "IDP", "not-the-secret", uid)+
		profile("down", "http://127.0.0.1:1/token", "vocabulary-secret", uid)+
		profile("slow", slowIdP.TokenURL, "vocabulary-secret", uid),
		agenttest.Options{ShutdownGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.IdP.AddClient(idptest.Client{ID: "c", Secret: "vocabulary-secret", Method: "client_secret_basic"})
	caller := ipc.Caller{UID: uid, GID: uid}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	child, stdout := startVocabularyClient(t, r.Socket, uid)
	lines := bufio.NewScanner(stdout)
	next := func() answer {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the client of uid %d stopped answering: %v", uid, lines.Err())
		}
		var a answer
		if err := json.Unmarshal(lines.Bytes(), &a); err != nil {
			t.Fatalf("client line %q: %v", lines.Text(), err)
		}
		return a
	}
	for _, tc := range vocabularyCases {
		in := answerOf(tc.inProcess(ctx, r, caller))
		over := next()
		if os.Geteuid() != 0 && tc.name == "denied" {
			continue // the agent's own uid may use every profile
		}
		if len(in.Is) != 1 || strings.Join(in.Is, ",") != strings.Join(over.Is, ",") || in.Code != over.Code || in.Retry != over.Retry {
			t.Errorf("%s: in process %+v (%s), over the socket %+v; want one sentinel, the same both ways", tc.name, in, in.Internal, over)
		}
	}
	want := map[string]string{
		"unknown profile": "ErrUnknownProfile", "denied": "ErrUnknownProfile", "IdP refused": "ErrIdPRefused",
		"IdP unavailable": "ErrIdPUnavailable", "min_valid unmeetable": "ErrMinValid",
		"unknown endpoint": "ErrNotFound", "wrong method": "ErrNotFound",
	}
	for _, tc := range vocabularyCases {
		if in := answerOf(tc.inProcess(ctx, r, caller)); strings.Join(in.Is, ",") != want[tc.name] {
			t.Errorf("%s in process: errors.Is answers %v, want %s", tc.name, in.Is, want[tc.name])
		}
	}

	// Shutting down: the child and an in-process caller wait for a token
	// the IdP never sends; the daemon stops, its grace runs out, and both
	// are told the agent is shutting down.
	if !lines.Scan() || lines.Text() != "waiting" {
		t.Fatalf("client: %q, want waiting", lines.Text())
	}
	slowIdP.WaitRequests(1) // the child's request is waiting on that fetch
	inProcess := make(chan error, 1)
	go func() { _, err := r.Agent.Token(ctx, caller, "slow", 0); inProcess <- err }()
	if err := r.Stop(); err != nil {
		t.Fatalf("daemon stopped with %v", err)
	}
	in, over := answerOf(<-inProcess), next()
	if strings.Join(in.Is, ",") != "ErrShuttingDown" || strings.Join(over.Is, ",") != "ErrShuttingDown" || in.Code != over.Code {
		t.Errorf("%s: in process %+v (%s), over the socket %+v; want ErrShuttingDown both ways", shuttingDown, in, in.Internal, over)
	}
	if err := child.Wait(); err != nil {
		t.Errorf("client: %v", err)
	}
}

// startVocabularyClient runs this test binary as the socket-side client,
// as uid when the test runs as root (copied where that user can run it).
func startVocabularyClient(t *testing.T, sock string, uid uint32) (*exec.Cmd, io.Reader) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{vocabularySocketEnv + "=" + sock, "GORACE=atexit_sleep_ms=0"}
	cmd.Stderr = os.Stderr
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "tokenagent-vocabulary-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		os.Chmod(dir, 0o755)
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Path = filepath.Join(dir, "client.test")
		if err := os.WriteFile(cmd.Path, data, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, stdout
}
