package fleet_test

import (
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokenagent/tokenagent/agent/fleet"
	"github.com/tokenagent/tokenagent/agent/fleet/fleettest"
)

// cluster is the package's 3-member etcd cluster, shared by the tests
// that do not fault it; each test keeps to its own prefix (shared).
var cluster *fleettest.Cluster

func TestMain(m *testing.M) { fleettest.Main(m, &cluster) }

// shared returns the shared cluster's endpoints and t's own key prefix.
func shared(t *testing.T) (endpoints []string, prefix string) {
	return cluster.Endpoints, fleettest.Prefix(t)
}

func newKey(t *testing.T) *fleet.Key { return fleettest.Key(t) }

func client(t *testing.T, endpoints []string) *clientv3.Client { return fleettest.Client(t, endpoints) }
