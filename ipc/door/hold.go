package door

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Held is a TCP door's listener over every address the door holds — a
// loopback door's two families, 127.0.0.1:PORT and [::1]:PORT — as one
// net.Listener. An address that cannot be bound (another process holds
// the port) does not stop the door, nor any other: Hold retries it in the
// background until it binds or the listener is closed, and State says
// which addresses are down and why.
type Held struct {
	what    string // the setting, in errors: "token_endpoint"
	opts    HoldOptions
	conns   chan accepted
	done    chan struct{}
	closeMu sync.Once
	wg      sync.WaitGroup

	mu     sync.Mutex
	addrs  []string // every address, in the order configured
	bound  map[string]net.Listener
	failed map[string]error // the last bind failure of an address not bound
	absent map[string]error // addresses this host cannot have (no IPv6): not retried
}

// HoldOptions tune Hold; the zero value is the production default.
type HoldOptions struct {
	// Retry is how often an address that could not be bound is tried
	// again; default 10s.
	Retry time.Duration
	// Inherited are listeners already bound for some of the addresses
	// (socket activation, ActivatedListeners): those are not bound again.
	Inherited []net.Listener
	// OnChange, if set, is told each time an address changes state: err
	// nil when it is bound, the bind's error when it is not (once per
	// distinct error, not once per retry).
	OnChange func(addr string, err error)
}

type accepted struct {
	c   net.Conn
	err error
}

// AddrState is one held address's state.
type AddrState struct {
	Addr string
	// Err is why the address is not bound now; nil when it is.
	Err error
}

// HoldLoopback holds a loopback door at addr and at the same port of the
// other loopback family (127.0.0.1 ↔ ::1), so that a client resolving
// localhost to either reaches the agent and no other user can take the
// family the agent left free. Only an address that is not a loopback IP
// and port is an error; what cannot be bound yet is retried (see Held).
// A host without IPv6 (or IPv4) loopback leaves that family out.
func HoldLoopback(what, addr string, opts HoldOptions) (*Held, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return nil, fmt.Errorf("%s %q: only a loopback IP address and port may serve tokens over TCP", what, addr)
	}
	addrs := []string{ap.String()}
	switch a := ap.Addr().Unmap(); {
	case a == netip.MustParseAddr("127.0.0.1"):
		addrs = append(addrs, netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port()).String())
	case a == netip.IPv6Loopback():
		addrs = append(addrs, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port()).String())
	}
	return Hold(what, addrs, opts), nil
}

// Hold listens on every address (TCP), the first one at once: when its
// port is 0, the others take the port the first one got.
func Hold(what string, addrs []string, opts HoldOptions) *Held {
	if opts.Retry <= 0 {
		opts.Retry = 10 * time.Second
	}
	h := &Held{what: what, opts: opts, conns: make(chan accepted), done: make(chan struct{}),
		addrs: append([]string(nil), addrs...), bound: map[string]net.Listener{}, failed: map[string]error{}, absent: map[string]error{}}
	h.mu.Lock()
	for _, ln := range opts.Inherited {
		// An inherited socket serves the address it is bound to, even one
		// the configuration does not name (the daemon said so in its log).
		addr := ln.Addr().String()
		for _, a := range h.addrs {
			if sameAddr(a, addr) {
				addr = a
			}
		}
		if !slices.Contains(h.addrs, addr) {
			h.addrs = append(h.addrs, addr)
		}
		h.bound[addr] = ln
		h.pump(ln)
	}
	h.mu.Unlock()
	h.bindMissing()
	h.mu.Lock()
	if first, ok := h.bound[h.addrs[0]]; ok && len(h.addrs) > 1 {
		port := first.Addr().(*net.TCPAddr).Port
		for i, a := range h.addrs[1:] {
			if ap, err := netip.ParseAddrPort(a); err == nil && ap.Port() == 0 && port != 0 {
				h.addrs[i+1] = netip.AddrPortFrom(ap.Addr(), uint16(port)).String()
				delete(h.failed, a)
			}
		}
	}
	h.mu.Unlock()
	h.bindMissing()
	h.wg.Add(1)
	go h.retry()
	return h
}

// bindMissing tries each address not bound yet (nor absent from the
// host) once.
func (h *Held) bindMissing() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.addrs {
		if _, ok := h.bound[a]; ok {
			continue
		}
		if _, ok := h.absent[a]; ok {
			continue
		}
		if ap, err := netip.ParseAddrPort(a); err == nil && ap.Port() == 0 && a != h.addrs[0] {
			continue // waits for the first address's port
		}
		ln, err := net.Listen("tcp", a)
		if err == nil {
			select {
			case <-h.done: // closed meanwhile
				ln.Close()
				return
			default:
			}
			h.bound[a] = ln
			_, wasDown := h.failed[a]
			delete(h.failed, a)
			h.pump(ln)
			if wasDown && h.opts.OnChange != nil {
				h.opts.OnChange(a, nil)
			}
			continue
		}
		if a != h.addrs[0] && (errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
			// This host has no such loopback address (IPv6 disabled):
			// nobody else can take it either.
			h.absent[a] = err
			continue
		}
		err = h.bindError(a, err)
		if prev := h.failed[a]; prev == nil || prev.Error() != err.Error() {
			if h.opts.OnChange != nil {
				h.opts.OnChange(a, err)
			}
		}
		h.failed[a] = err
	}
}

// bindError names the setting, the address and, where the kernel lets
// this process see it, who holds the port, and says what to do.
func (h *Held) bindError(addr string, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s: %w", h.what, addr, err)
	}
	who := "another process"
	if ap, perr := netip.ParseAddrPort(addr); perr == nil {
		if holder := PortHolder(ap); holder != "" {
			who = holder
		}
	}
	return fmt.Errorf("%s %s: the port is held by %s; the agent retries every %v. Stop that process, or use socket activation (tokenagent.socket) or a port below 1024 so that no user can take it: %w",
		h.what, addr, who, h.opts.Retry, err)
}

// retry binds what is missing every Retry until closed.
func (h *Held) retry() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.Retry)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
			h.mu.Lock()
			missing := len(h.failed) > 0
			h.mu.Unlock()
			if missing {
				h.bindMissing()
			}
		}
	}
}

// pump hands ln's connections to Accept until ln is closed. Call with mu
// held.
func (h *Held) pump(ln net.Listener) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case h.conns <- accepted{c, err}:
			case <-h.done:
				if c != nil {
					c.Close()
				}
				return
			}
		}
	}()
}

// Accept returns the next connection on any bound address; it waits while
// none is bound.
func (h *Held) Accept() (net.Conn, error) {
	select {
	case a := <-h.conns:
		return a.c, a.err
	case <-h.done:
		return nil, fmt.Errorf("%s: %w", h.what, net.ErrClosed)
	}
}

// Close stops listening on every address and retrying the others.
func (h *Held) Close() error {
	h.closeMu.Do(func() {
		close(h.done)
		h.mu.Lock()
		for _, ln := range h.bound {
			ln.Close()
		}
		h.mu.Unlock()
	})
	h.wg.Wait()
	return nil
}

// Addr is the first address's: the one configured.
func (h *Held) Addr() net.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ln, ok := h.bound[h.addrs[0]]; ok {
		return ln.Addr()
	}
	if ap, err := netip.ParseAddrPort(h.addrs[0]); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return &net.TCPAddr{}
}

// State says, for each address this host has, whether it is bound.
func (h *Held) State() []AddrState {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []AddrState
	for _, a := range h.addrs {
		if _, ok := h.absent[a]; ok {
			continue
		}
		out = append(out, AddrState{Addr: a, Err: h.failed[a]})
	}
	return out
}

// sameAddr reports whether two "host:port" strings are the same TCP
// address (IPv4-mapped IPv6 equal to IPv4).
func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddrPort(a)
	y, err2 := netip.ParseAddrPort(b)
	return err1 == nil && err2 == nil && x.Port() == y.Port() && x.Addr().Unmap() == y.Addr().Unmap()
}
