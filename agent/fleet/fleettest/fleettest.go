// Package fleettest runs real etcd clusters on loopback for tests of the
// fleet: embedded members (go.etcd.io/etcd/server/v3/embed) by default,
// or processes of an etcd binary (Debian's etcd-server in CI) when
// TOKENAGENT_ETCD names one. Members can be stopped — killed, for
// processes — and restarted on their data, to test faults.
package fleettest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// A Cluster is a running etcd cluster of real members on loopback.
type Cluster struct {
	// Endpoints are the members' client URLs, in member order.
	Endpoints []string
	// TLS, for a cluster NewTLS started, holds its certificates.
	TLS       *TLSFiles
	members   []*member
	binary    string      // "" for embedded members
	clientTLS *tls.Config // nil: plain http
	quota     int64       // each member's backend quota in bytes (0: etcd's 2 GiB)
}

type member struct {
	name, dir   string
	peer, cli   *url.URL
	initial     string
	mu          sync.Mutex
	embedded    *embed.Etcd
	proc        *exec.Cmd
	procExited  chan struct{}
	startedOnce bool
}

// Binary is the etcd binary TOKENAGENT_ETCD names ("" for embedded).
func Binary() string { return os.Getenv("TOKENAGENT_ETCD") }

// New starts a cluster of n members for t; it stops with t.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := Start(n, t.TempDir(), Binary())
	if err != nil {
		t.Fatalf("etcd cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewTLS starts a cluster of n members for t that serves clients over
// TLS only and requires client certificates (c.TLS).
func NewTLS(t testing.TB, n int) *Cluster {
	t.Helper()
	dir := t.TempDir()
	files, err := writeTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := start(n, dir, Binary(), &files, 0)
	if err != nil {
		t.Fatalf("etcd cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewQuota starts a cluster of n members for t whose backends hold at
// most quota bytes (etcd's --quota-backend-bytes): writes past it raise
// etcd's NOSPACE alarm, after which it answers reads and refuses writes.
func NewQuota(t testing.TB, n int, quota int64) *Cluster {
	t.Helper()
	c, err := start(n, t.TempDir(), Binary(), nil, quota)
	if err != nil {
		t.Fatalf("etcd cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Start starts a cluster of n members with their data under dir, as
// processes of binary, or embedded when binary is "".
func Start(n int, dir, binary string) (*Cluster, error) { return start(n, dir, binary, nil, 0) }

func start(n int, dir, binary string, files *TLSFiles, quota int64) (*Cluster, error) {
	c := &Cluster{binary: binary, TLS: files, quota: quota}
	if files != nil {
		var err error
		if c.clientTLS, err = files.clientTLS(); err != nil {
			return nil, err
		}
	}
	var initial []string
	for i := range n {
		peer, err := freeURL()
		if err != nil {
			return nil, err
		}
		cli, err := freeURL()
		if err != nil {
			return nil, err
		}
		if files != nil {
			cli.Scheme = "https"
		}
		m := &member{name: fmt.Sprintf("m%d", i), dir: filepath.Join(dir, fmt.Sprintf("m%d", i)), peer: peer, cli: cli}
		c.members = append(c.members, m)
		c.Endpoints = append(c.Endpoints, cli.String())
		initial = append(initial, fmt.Sprintf("%s=%s", m.name, peer))
	}
	for _, m := range c.members {
		m.initial = strings.Join(initial, ",")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range c.members {
		wg.Go(func() { errs[i] = c.Restart(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.WaitLeader(30 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// WaitLeader waits until a member leads.
func (c *Cluster) WaitLeader(within time.Duration) error {
	deadline := time.Now().Add(within)
	for c.Leader() < 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd cluster: no leader within %v", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func freeURL() (*url.URL, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}, nil
}

// Stop stops member i: a process is killed (SIGKILL), an embedded member
// closed at once.
func (c *Cluster) Stop(i int) {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.embedded != nil {
		m.embedded.Close()
		m.embedded = nil
	}
	if m.proc != nil {
		m.proc.Process.Signal(syscall.SIGKILL)
		<-m.procExited
		m.proc = nil
	}
}

// Restart starts member i (again) on its data and waits until it serves.
func (c *Cluster) Restart(i int) error {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.embedded != nil || m.proc != nil {
		return nil
	}
	state := "new"
	if m.startedOnce {
		state = "existing"
	}
	m.startedOnce = true
	if c.binary == "" {
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir = m.name, m.dir
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*m.peer}, []url.URL{*m.peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*m.cli}, []url.URL{*m.cli}
		cfg.InitialCluster, cfg.ClusterState = m.initial, state
		cfg.InitialClusterToken = "tokenagent-test"
		// Elections at a tenth of etcd's default pace, to keep tests
		// short; processes keep the defaults (100 ms / 1 s).
		cfg.TickMs, cfg.ElectionMs = 10, 100
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{"/dev/null"}
		cfg.QuotaBackendBytes = c.quota
		if c.TLS != nil {
			cfg.ClientTLSInfo = transport.TLSInfo{CertFile: c.TLS.ServerCert, KeyFile: c.TLS.ServerKey, TrustedCAFile: c.TLS.CA, ClientCertAuth: true}
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return fmt.Errorf("member %s: %w", m.name, err)
		}
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			e.Close()
			return fmt.Errorf("member %s not ready within 30 s", m.name)
		}
		m.embedded = e
		return nil
	}
	args := []string{
		"--name", m.name, "--data-dir", m.dir,
		"--listen-peer-urls", m.peer.String(), "--initial-advertise-peer-urls", m.peer.String(),
		"--listen-client-urls", m.cli.String(), "--advertise-client-urls", m.cli.String(),
		"--initial-cluster", m.initial, "--initial-cluster-state", state,
		"--initial-cluster-token", "tokenagent-test", "--logger", "zap", "--log-level", "error"}
	if c.quota > 0 {
		args = append(args, "--quota-backend-bytes", fmt.Sprint(c.quota))
	}
	if c.TLS != nil {
		args = append(args, "--cert-file", c.TLS.ServerCert, "--key-file", c.TLS.ServerKey, "--trusted-ca-file", c.TLS.CA, "--client-cert-auth")
	}
	cmd := exec.Command(c.binary, args...)
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("member %s: %w", m.name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.proc, m.procExited = cmd, exited
	// A member of a cluster being formed answers once a quorum is up; a
	// restarted one once it rejoined. Either way: ask it for its status.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.cli.String()}, DialTimeout: 30 * time.Second, TLS: c.clientTLS})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := cli.Status(ctx, m.cli.String()); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("member %s: %s exited", m.name, c.binary)
		case <-ctx.Done():
			return fmt.Errorf("member %s not ready within 30 s", m.name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Leader returns the index of the member that leads now (-1: none known).
func (c *Cluster) Leader() int {
	for i, ep := range c.Endpoints {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, TLS: c.clientTLS})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		cli.Close()
		if err == nil && st.Header.MemberId == st.Leader {
			return i
		}
	}
	return -1
}

// Close stops every member (at once: an embedded member closing alone
// waits for the others). Embedded members first stop their raft server
// without a handover: a leader closing normally hands leadership to a
// member that is closing too, and waits etcd's request timeout (5 s) for
// it in vain.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Go(func() {
			m := c.members[i]
			m.mu.Lock()
			if m.embedded != nil {
				m.embedded.Server.HardStop()
			}
			m.mu.Unlock()
			c.Stop(i)
		})
	}
	wg.Wait()
}
