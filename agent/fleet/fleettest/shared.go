package fleettest

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/fleet/etcdfleet"
)

// Main runs a test binary's tests with *shared set to a 3-member cluster
// of its own, which the tests that do not fault it share (each on its own
// Prefix), and exits with their result. Call it from TestMain.
func Main(m *testing.M, shared **Cluster) {
	dir, err := os.MkdirTemp("", "fleet-test-etcd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := Start(3, dir, Binary())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	*shared = c
	code := m.Run()
	c.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runs numbers the tests' prefixes, so that each run (-count=N) of a test
// starts on an empty prefix with no seal key pinned.
var runs atomic.Int64

// Prefix is a key prefix of t's own on a shared cluster.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("/%s-%d/", strings.ReplaceAll(t.Name(), "/", "_"), runs.Add(1))
}

// Key is a new random seal key.
func Key(t testing.TB) *fleet.Key {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	k, err := fleet.ParseKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Client is an etcd client of endpoints, closed when t ends.
func Client(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := etcdfleet.Dial(endpoints, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
