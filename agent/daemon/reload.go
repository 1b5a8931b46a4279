package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/secretref"
	filesink "github.com/tokenagent/tokenagent/agent/sink"
)

// reloadLoop serves until ctx ends or a door stops serving, applying
// every SIGHUP and Reload on the way.
func (d *Daemon) reloadLoop(ctx context.Context, a *agent.Agent, sig <-chan os.Signal, served <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			return fmt.Errorf("serving: %w", err)
		case <-sig:
			d.reload(a)
		case <-d.hup:
			d.reload(a)
		}
	}
}

// reload re-reads the configuration file. A file that does not load, or a
// profile that cannot be built, leaves the running configuration in place;
// the log says why.
func (d *Daemon) reload(a *agent.Agent) {
	defer func() {
		next := make(chan struct{})
		close(*d.reloadDone.Swap(&next))
	}()
	d.reopenAudit()
	path := d.opts.ConfigPath
	if path == "" {
		d.log.Info().Msg("SIGHUP: no configuration file to reload (--dev or environment variables)")
		return
	}
	sdNotify("RELOADING=1")
	defer sdNotify("READY=1")
	d.log.Info().Str("config", path).Msg("SIGHUP: reloading configuration")
	next, err := secretref.LoadConfig(path)
	if err == nil {
		err = next.CheckServes()
	}
	if err == nil {
		for _, dir := range next.SinkDirs() { // a new file sink must live somewhere safe too
			if err = filesink.MakeDir(dir); err != nil {
				break
			}
		}
	}
	if err == nil {
		_, err = a.Reload(next)
	}
	if err != nil {
		d.log.Error().Err(err).Str("config", path).Msg("reload rejected; still running the previous configuration")
		return
	}
	d.mu.Lock()
	prev := d.cfg
	d.cfg, d.reloaded = next, d.clock.Now()
	d.mu.Unlock()
	setLogLevel(next)
	if d.opts.ManageMemory {
		applyMemoryLimit(next, d.log)
	}
	warnRestartOnly(prev, next, d.log)
	warnSelectors(next, d.log)
}

// reopenAudit opens audit_log anew on every SIGHUP, whatever becomes of
// the configuration: logrotate renamed the file and waits for the agent
// to let go of it. Lines queued before go to the old file, later ones to
// the new; if it cannot be opened, lines keep going to the old one.
func (d *Daemon) reopenAudit() {
	if d.audit == nil {
		return
	}
	if err := d.audit.Reopen(); err != nil {
		d.log.Error().Err(err).Msg("cannot reopen the audit log; its lines still go to the file it had open")
		return
	}
	d.log.Info().Str("audit_log", d.audit.path).Msg("audit log reopened")
}

// warnRestartOnly says which changed settings a reload cannot apply.
func warnRestartOnly(old, next *config.Config, log zerolog.Logger) {
	for _, s := range []struct {
		key       string
		was, then string
	}{
		{"socket", old.Socket, next.Socket},
		{"socket_mode", old.SocketMode, next.SocketMode},
		{"socket_group", old.SocketGroup, next.SocketGroup},
		{"max_connections", fmt.Sprint(old.MaxConnections), fmt.Sprint(next.MaxConnections)},
		{"max_connections_per_uid", fmt.Sprint(old.MaxConnectionsPerUID), fmt.Sprint(next.MaxConnectionsPerUID)},
		{"metrics_listen", old.MetricsListen, next.MetricsListen},
		{"token_endpoint", old.TokenEndpoint, next.TokenEndpoint},
		{"token_endpoint_unidentified", old.TokenEndpointUnidentified, next.TokenEndpointUnidentified},
		{"token_endpoint_https", old.TokenEndpointHTTPS, next.TokenEndpointHTTPS},
		{"local_ca_cert", old.LocalCACert, next.LocalCACert},
		{"store", old.Store, next.Store},
		{"store_key", old.StoreKey, next.StoreKey},
		{"store_key_previous", fmt.Sprint(old.StoreKeyPrevious), fmt.Sprint(next.StoreKeyPrevious)},
		{"log_format", old.LogFormat, next.LogFormat},
		{"audit_log", old.AuditLog, next.AuditLog},
		{"[fleet]", fleetText(old), fleetText(next)},
		{"azure_identity_endpoint", old.AzureIdentityEndpoint, next.AzureIdentityEndpoint},
		{"gcp_metadata", gcpText(old), gcpText(next)},
	} {
		if s.was != s.then {
			log.Warn().Str("setting", s.key).Msg("changed in the file, but applies only at start: restart the agent to use it")
		}
	}
}

// gcpText is every profile's metadata server (gcp_metadata, gcp_project)
// as text, to see whether a reload changed one: each is a door opened at
// start.
func gcpText(c *config.Config) string {
	var b strings.Builder
	for _, name := range c.ProfileNames() {
		if p := c.Profiles[name]; p.GCPMetadata != "" {
			fmt.Fprintf(&b, "%s=%s/%s;", name, p.GCPMetadata, p.GCPProject)
		}
	}
	return b.String()
}

// fleetText is [fleet] as text, to see whether a reload changed it.
func fleetText(c *config.Config) string {
	b, _ := json.Marshal(c.Fleet)
	return string(b)
}
