package daemon

import (
	"net"
	"net/netip"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/ipc/door"
)

// The names a .socket unit gives its sockets (FileDescriptorName=) so
// that the daemon hands each to its door: the settings they stand for.
// A socket without one of these names goes to the door whose address it
// has.
const (
	fdNameSocket   = "socket"
	fdNameEndpoint = "token_endpoint"
	fdNameHTTPS    = "token_endpoint_https"
	fdNameMetrics  = "metrics_listen"
	fdNameAzure    = "azure_identity_endpoint"
)

// heldDoor is a TCP door's listener and the setting it serves.
type heldDoor struct {
	name, setting string
	held          *door.Held
}

// inherited are the sockets systemd passed (socket activation) that no
// door has taken yet.
type inherited []door.Activated

// take removes and returns the sockets named name, or bound to one of
// addrs (TCP addresses, or the Unix socket's path).
func (in *inherited) take(name string, addrs ...string) []net.Listener {
	var out []net.Listener
	rest := (*in)[:0]
	for _, a := range *in {
		if a.Name == name || matchesAddr(a.Listener.Addr(), addrs) {
			out = append(out, a.Listener)
			continue
		}
		rest = append(rest, a)
	}
	*in = rest
	return out
}

func matchesAddr(got net.Addr, addrs []string) bool {
	for _, want := range addrs {
		if got.Network() == "unix" && got.String() == want {
			return true
		}
		g, err1 := netip.ParseAddrPort(got.String())
		w, err2 := netip.ParseAddrPort(want)
		if err1 == nil && err2 == nil && g.Port() == w.Port() && g.Addr().Unmap() == w.Addr().Unmap() {
			return true
		}
	}
	return false
}

// activated takes the sockets systemd passed, if any.
func (d *Daemon) activated() inherited {
	acts, err := door.ActivatedListeners()
	if err != nil {
		// Not fatal: each door binds its own address instead.
		d.log.Error().Err(err).Msg("socket activation: cannot take the sockets systemd passed; binding the configured addresses instead")
	}
	for _, a := range acts {
		d.log.Info().Str("name", a.Name).Str("address", a.Listener.Addr().String()).Msg("socket activation: took a socket from systemd")
	}
	return acts
}

// closeUnclaimed closes the passed sockets no door took, saying which.
func (d *Daemon) closeUnclaimed(in inherited) {
	for _, a := range in {
		d.log.Warn().Str("name", a.Name).Str("address", a.Listener.Addr().String()).
			Msg("socket activation: no door serves this socket (name it socket, token_endpoint or metrics_listen, or give it the configured address); closed")
		a.Listener.Close()
	}
}

// holdLoopback opens a loopback TCP door's listener in both families,
// the inherited sockets first. An address that cannot be bound is logged
// (naming who holds it, where the kernel says), shown in /v1/health and
// retried; the other doors start regardless. Only an address that is not
// loopback is an error.
func (d *Daemon) holdLoopback(name, setting, addr string, inh []net.Listener) (*door.Held, error) {
	h, err := door.HoldLoopback(setting, addr, d.holdOptions(name, setting, inh))
	if err != nil {
		return nil, err
	}
	d.track(name, setting, h)
	return h, nil
}

// holdAny is holdLoopback for a door that may listen anywhere
// (metrics_listen), on its one address.
func (d *Daemon) holdAny(name, setting, addr string, inh []net.Listener) *door.Held {
	h := door.Hold(setting, []string{addr}, d.holdOptions(name, setting, inh))
	d.track(name, setting, h)
	return h
}

func (d *Daemon) holdOptions(name, setting string, inh []net.Listener) door.HoldOptions {
	return door.HoldOptions{Retry: d.opts.BindRetry, Inherited: inh, OnChange: func(a string, err error) {
		if err != nil {
			d.log.Error().Err(err).Str("door", name).Str(setting, a).Msg("door down: cannot bind its address; the other doors serve")
			return
		}
		d.log.Info().Str("door", name).Str(setting, a).Msg("door up: bound its address")
	}}
}

func (d *Daemon) track(name, setting string, h *door.Held) {
	d.mu.Lock()
	d.held = append(d.held, heldDoor{name: name, setting: setting, held: h})
	d.mu.Unlock()
}

// socketListener is the Unix socket: the one systemd passed, or one
// created as the configuration says.
func (d *Daemon) socketListener(cfg *config.Config, a *agent.Agent, in *inherited) (net.Listener, error) {
	if lns := in.take(fdNameSocket, d.opts.Socket); len(lns) > 0 {
		for _, extra := range lns[1:] {
			extra.Close()
		}
		if lns[0].Addr().String() != d.opts.Socket {
			d.log.Warn().Str("socket", d.opts.Socket).Str("passed", lns[0].Addr().String()).
				Msg("socket activation: the socket systemd passed is not at the configured path; clients must use the passed one")
		}
		return door.LimitUnix(lns[0], connectionLimits(cfg, a)), nil
	}
	return listen(cfg, a, d.opts.Socket)
}

// doorHealth is every held TCP address's state, for /v1/health.
func (d *Daemon) doorHealth() []ipc.DoorHealth {
	d.mu.Lock()
	held := d.held
	d.mu.Unlock()
	var out []ipc.DoorHealth
	for _, hd := range held {
		for _, st := range hd.held.State() {
			h := ipc.DoorHealth{Door: hd.setting, Address: st.Addr, State: "up"}
			if st.Err != nil {
				h.State, h.Error = "down", st.Err.Error()
			}
			out = append(out, h)
		}
	}
	return out
}
