// Package fleettest runs real etcd clusters (go.etcd.io/etcd/server/v3/embed)
// on loopback for tests of the fleet.
package fleettest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster starts a real etcd cluster of n members on loopback, for t,
// and returns its client URLs; it stops with t.
func Cluster(t *testing.T, n int) []string {
	t.Helper()
	free := func() *url.URL {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return &url.URL{Scheme: "http", Host: ln.Addr().String()}
	}
	type member struct{ peer, client *url.URL }
	members := make([]member, n)
	var initial []string
	for i := range members {
		members[i] = member{free(), free()}
		initial = append(initial, fmt.Sprintf("m%d=%s", i, members[i].peer))
	}
	var endpoints []string
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, m := range members {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(t.TempDir(), cfg.Name)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*m.peer}, []url.URL{*m.peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*m.client}, []url.URL{*m.client}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "tokenagent-test"
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{"/dev/null"}
		endpoints = append(endpoints, m.client.String())
		wg.Go(func() {
			e, err := embed.StartEtcd(cfg)
			if err != nil {
				errs[i] = err
				return
			}
			t.Cleanup(e.Close)
			select {
			case <-e.Server.ReadyNotify():
			case <-time.After(30 * time.Second):
				errs[i] = errors.New("member not ready within 30 s")
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("etcd cluster: %v", err)
	}
	return endpoints
}
