//go:build !linux

package door

import "net/netip"

// PortHolder: only Linux tells here who listens on a port.
func PortHolder(netip.AddrPort) string { return "" }
