package daemon

import (
	"fmt"
	"os"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
	"github.com/tokenagent/tokenagent/ipc/gcpmeta"
	"github.com/tokenagent/tokenagent/ipc/metrics"
)

// doorGCP names a profile's metadata-server door in logs.
func doorGCP(profile string) string { return "gcp metadata (profile " + profile + ")" }

// openGCPDoors opens a Google metadata server for each profile that sets
// gcp_metadata, each on its own loopback port, with the token endpoint's
// caller identity and connection caps; its address goes into the
// profile's listing (tokenagent env --for gcp). A port another process
// holds does not stop the agent: the door is down and retried.
func (d *Daemon) openGCPDoors(a *agent.Agent, passed *inherited, observe func(door.RequestEvent), requests *metrics.Requests) (doors, error) {
	cfg := d.opts.Config
	var ds doors
	addrs := map[string]string{}
	for _, name := range cfg.ProfileNames() {
		p := cfg.Profiles[name]
		if p.GCPMetadata == "" {
			continue
		}
		setting := "profiles." + name + ".gcp_metadata"
		h, err := d.holdLoopback(doorGCP(name), setting, p.GCPMetadata, passed.take(setting, p.GCPMetadata))
		if err != nil {
			ds.stop(d, a)
			return nil, fmt.Errorf("config %s: profile %q: %w", cfg.Path(), name, err)
		}
		srv := gcpmeta.New(gcpmeta.Config{Backend: endpointBackend{backend{a, d}}, Profile: name, Project: p.GCPProject, Scopes: p.Scopes,
			Observe: observe, Requests: requests, AgentUID: uint32(os.Geteuid())})
		srv.SetErrorLog(httpErrorLog(d.log, doorGCP(name), d.httpLimit))
		ds = append(ds, &runner{name: doorGCP(name), srv: srv, ln: door.LimitTCP(h, connectionLimits(cfg, a))})
		addrs[name] = h.Addr().String()
		d.log.Info().Str("profile", name).Str("gcp_metadata", addrs[name]).
			Msg("serving the profile as a Google metadata server's default service account (GCE_METADATA_HOST)")
	}
	d.mu.Lock()
	d.gcpAddrs = addrs
	d.mu.Unlock()
	return ds, nil
}

// GCPMetadataAddr is the address of the profile's metadata server; ""
// when it has none.
func (d *Daemon) GCPMetadataAddr(profile string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gcpAddrs[profile]
}

// ProfileInfos is the engine's listing with each profile's metadata
// server address.
func (b backend) ProfileInfos(caller ipc.Caller) []ipc.ProfileInfo {
	infos := b.Agent.ProfileInfos(caller)
	for i := range infos {
		infos[i].GCPMetadata = b.d.GCPMetadataAddr(infos[i].Name)
	}
	return infos
}
