package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/azureid"
	"github.com/tokenagent/tokenagent/ipc/door"
	"github.com/tokenagent/tokenagent/ipc/localapi"
	"github.com/tokenagent/tokenagent/ipc/metrics"
	"github.com/tokenagent/tokenagent/ipc/tokenendpoint"
)

// server is what every door's server does: http.Server's lifecycle.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// runner is one door: a listener and the server that answers on it, started once
// (serve) and stopped once (stop), whichever door it is.
type runner struct {
	name string
	srv  server
	ln   net.Listener
	// cut: stopped at once rather than drained (a Prometheus scrape is
	// retried; a caller waiting for a token is not).
	cut  bool
	done chan struct{} // closed when Serve has returned; nil before serve
}

// serve starts the door; its Serve's result goes to served.
func (dr *runner) serve(served chan<- error) {
	dr.done = make(chan struct{})
	go func() { defer close(dr.done); served <- dr.srv.Serve(dr.ln) }()
}

// stop drains the door (or cuts it) and waits for Serve to return: a
// server closes its listener, removing the socket, when Serve returns,
// even when Shutdown came first, so Run never returns with the socket
// still there. A door that never served only closes its listener.
func (dr *runner) stop(d *Daemon, a *agent.Agent) {
	switch {
	case dr.done == nil:
		dr.ln.Close()
		return
	case dr.cut:
		dr.srv.Close()
	default:
		d.drain(dr.srv, dr.name, a)
	}
	<-dr.done
}

// doors are the daemon's doors in the order they open; they stop in the
// reverse order, the socket last.
type doors []*runner

// serve starts every door; the returned channel has one answer from each
// door's Serve and never blocks it.
func (ds doors) serve() <-chan error {
	served := make(chan error, len(ds))
	for _, dr := range ds {
		dr.serve(served)
	}
	return served
}

// stop stops every door, the last opened first.
func (ds doors) stop(d *Daemon, a *agent.Agent) {
	for i := len(ds) - 1; i >= 0; i-- {
		ds[i].stop(d, a)
	}
}

// addr is the named door's address; nil when it is not open.
func (ds doors) addr(name string) net.Addr {
	for _, dr := range ds {
		if dr.name == name {
			return dr.ln.Addr()
		}
	}
	return nil
}

// Door names, as logs say them.
const (
	doorSocket   = "socket"
	doorEndpoint = "token endpoint"
	doorHTTPS    = "token endpoint (https)"
	doorMetrics  = "metrics"
	doorAzure    = "azure identity endpoint"
)

// openDoors opens every door the configuration asks for — the socket, the
// loopback token endpoint, /metrics over TCP — without serving yet. The
// token endpoint's listener is opened first, so that the socket can tell
// its URL (/v1/health, for tokenagent env). On error, what was opened is
// closed again.
func (d *Daemon) openDoors(a *agent.Agent) (ds doors, err error) {
	cfg := d.opts.Config
	defer func() {
		if err != nil {
			ds.stop(d, a)
		}
	}()
	passed := d.activated()
	// A closure: the doors take from passed below, and only what is left
	// then is unclaimed (a deferred call's argument is evaluated now).
	defer func() { d.closeUnclaimed(passed) }()
	var eln net.Listener
	endpointURL := ""
	if cfg.TokenEndpoint != "" {
		// A port another process holds does not stop the agent: the door
		// is down (health says so) and retried.
		h, err := d.holdLoopback(doorEndpoint, "token_endpoint", cfg.TokenEndpoint, passed.take(fdNameEndpoint, cfg.TokenEndpoint))
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", cfg.Path(), err)
		}
		eln = door.LimitTCP(h, connectionLimits(cfg, a))
		endpointURL = "http://" + h.Addr().String() + tokenendpoint.PathToken
	}
	var hln net.Listener
	httpsURL := ""
	var trust *ipc.LocalCA
	if cfg.TokenEndpointHTTPS != "" {
		ca, files, err := d.openLocalCA(cfg)
		if err != nil {
			if eln != nil {
				eln.Close()
			}
			return nil, err
		}
		h, err := d.holdLoopback(doorHTTPS, "token_endpoint_https", cfg.TokenEndpointHTTPS, passed.take(fdNameHTTPS, cfg.TokenEndpointHTTPS))
		if err != nil {
			if eln != nil {
				eln.Close()
			}
			return nil, fmt.Errorf("config %s: %w", cfg.Path(), err)
		}
		// The caller is identified on the TCP connection under TLS, at
		// accept, as on the plain endpoint.
		hln = tls.NewListener(door.LimitTCP(h, connectionLimits(cfg, a)), ca.TLSConfig())
		httpsURL = "https://" + h.Addr().String() + tokenendpoint.PathToken
		trust = &ipc.LocalCA{Cert: files.cert, Bundle: files.bundle, TrustStore: files.p12, TrustStorePassword: TrustStorePassword}
	}
	ln, err := d.socketListener(cfg, a, &passed)
	if err != nil {
		for _, l := range []net.Listener{eln, hln} {
			if l != nil {
				l.Close()
			}
		}
		return nil, err
	}
	// Azure's managed-identity protocols on a loopback port of their own,
	// callers identified as on the token endpoint.
	var aln net.Listener
	var azure *ipc.AzureIdentity
	var azureSecret string
	if cfg.AzureIdentityEndpoint != "" {
		if azureSecret, err = d.azureIdentityHeader(cfg); err == nil {
			var h *door.Held
			if h, err = d.holdLoopback(doorAzure, "azure_identity_endpoint", cfg.AzureIdentityEndpoint, passed.take(fdNameAzure, cfg.AzureIdentityEndpoint)); err == nil {
				aln = door.LimitTCP(h, connectionLimits(cfg, a))
				base := "http://" + h.Addr().String()
				azure = &ipc.AzureIdentity{Endpoint: base + azureid.PathAppService, IMDSHost: base, Header: azureSecret}
			} else {
				err = fmt.Errorf("config %s: %w", cfg.Path(), err)
			}
		}
		if err != nil {
			for _, l := range []net.Listener{eln, hln, ln} {
				if l != nil {
					l.Close()
				}
			}
			return nil, err
		}
	}
	observe := d.requests.observe
	if audit := d.audit; audit != nil {
		logged := observe
		observe = func(ev door.RequestEvent) { logged(ev); audit.record(ev) }
	}
	if extra := d.opts.Observe; extra != nil {
		logged := observe
		observe = func(ev door.RequestEvent) { logged(ev); extra(ev) }
	}
	requests := &metrics.Requests{} // every door's, on the socket's /metrics
	srv := localapi.New(localapi.Config{Backend: backend{a, d}, Metrics: a, Observe: observe, AgentUID: uint32(os.Geteuid()), Requests: requests,
		ReadHeaderTimeout: d.opts.ReadHeaderTimeout, TokenEndpoint: endpointURL, TokenEndpointHTTPS: httpsURL, LocalCA: trust, Doors: d.doorHealth,
		AzureIdentity: azure})
	srv.SetErrorLog(httpErrorLog(d.log, doorSocket, d.httpLimit))
	ds = append(ds, &runner{name: doorSocket, srv: srv, ln: ln})
	if eln != nil {
		esrv := tokenendpoint.New(tokenendpoint.Config{Backend: endpointBackend{backend{a, d}}, Observe: observe, AgentUID: uint32(os.Geteuid()), Requests: requests,
			UnidentifiedByLocalSecret: cfg.TokenEndpointUnidentified == config.UnidentifiedLocalSecret})
		esrv.SetErrorLog(httpErrorLog(d.log, doorEndpoint, d.httpLimit))
		ds = append(ds, &runner{name: doorEndpoint, srv: esrv, ln: eln})
		d.log.Info().Str("token_endpoint", endpointURL).Msg("serving the loopback OAuth 2.0 token endpoint (both loopback families)")
	}
	if hln != nil {
		hsrv := tokenendpoint.New(tokenendpoint.Config{Backend: endpointBackend{backend{a, d}}, Observe: observe, AgentUID: uint32(os.Geteuid()), Requests: requests,
			Door: "token_endpoint_https", UnidentifiedByLocalSecret: cfg.TokenEndpointUnidentified == config.UnidentifiedLocalSecret})
		hsrv.SetErrorLog(httpErrorLog(d.log, doorHTTPS, d.httpLimit))
		ds = append(ds, &runner{name: doorHTTPS, srv: hsrv, ln: hln})
		d.log.Info().Str("token_endpoint_https", httpsURL).Str("local_ca_cert", trust.Cert).
			Msg("serving the token endpoint over TLS, with a certificate of the agent's local CA (callers trust local_ca_cert)")
	}
	gcp, err := d.openGCPDoors(a, &passed, observe, requests) // per-profile metadata servers
	if err != nil {
		return ds, err
	}
	ds = append(ds, gcp...)
	if aln != nil {
		asrv := azureid.New(azureid.Config{Backend: azureBackend{backend{a, d}}, Secret: azureSecret, Observe: observe, AgentUID: uint32(os.Geteuid()), Requests: requests})
		asrv.SetErrorLog(httpErrorLog(d.log, doorAzure, d.httpLimit))
		ds = append(ds, &runner{name: doorAzure, srv: asrv, ln: aln})
		d.log.Info().Str("azure_identity_endpoint", azure.Endpoint).Str("imds", azure.IMDSHost).
			Msg("serving Azure's managed-identity protocols (App Service and IMDS) for the Azure SDKs")
	}
	if cfg.MetricsListen != "" {
		mopts, err := metricsOptions(cfg)
		if err != nil {
			return ds, err
		}
		mln := net.Listener(d.holdAny(doorMetrics, "metrics_listen", cfg.MetricsListen, passed.take(fdNameMetrics, cfg.MetricsListen)))
		msrv := door.NewServer(srv.Metrics().Handler(mopts), door.Timeouts{}) // the doors' read, write and idle timeouts
		msrv.SetErrorLog(httpErrorLog(d.log, doorMetrics, d.httpLimit))
		ds = append(ds, &runner{name: doorMetrics, srv: msrv, ln: mln, cut: true})
		d.log.Info().Str("metrics_listen", mln.Addr().String()).Msg("serving /metrics over TCP")
	}
	return ds, nil
}

// metricsOptions reads metrics_token (a secret reference, read once at
// start) and metrics_profiles for the metrics listener. Errors name the
// reference, never the token.
func metricsOptions(cfg *config.Config) (metrics.ListenOptions, error) {
	opts := metrics.ListenOptions{Profiles: cfg.MetricsProfiles}
	if cfg.MetricsToken == "" {
		return opts, nil
	}
	token, err := secretref.Read(cfg.MetricsToken, cfg.Dir(), secretref.Secret)
	if err != nil {
		return opts, fmt.Errorf("config %s: metrics_token %s: %w", cfg.Path(), config.RefName(cfg.MetricsToken), err)
	}
	if token = secretref.TrimNewline(token); len(token) == 0 {
		return opts, fmt.Errorf("config %s: metrics_token %s is empty", cfg.Path(), config.RefName(cfg.MetricsToken))
	}
	opts.Token, opts.Profiles = token, true
	return opts, nil
}

// answerGrace is how long requests that were waiting for a fetch get to
// write their "shutting down" answer once the engine stopped fetching.
const answerGrace = time.Second

// drain lets a door's requests in flight finish, up to ShutdownGrace.
// Those still waiting for the IdP are then answered ErrShuttingDown (the
// engine stops fetching), and only what is left after that is cut off.
func (d *Daemon) drain(srv server, name string, a *agent.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err == nil {
		return
	}
	a.StopFetching()
	ctx, cancel = context.WithTimeout(context.Background(), answerGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		d.log.Warn().Err(err).Str("door", name).Msg("requests still in flight at shutdown were cut off")
		srv.Close()
	}
}
