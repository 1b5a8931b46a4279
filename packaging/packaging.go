// Package packaging holds the files that install tokenagent as a service:
// the systemd unit, sysusers.d and tmpfiles.d entries, a launchd property
// list, the nfpm configuration for .deb and .rpm, and Kubernetes
// manifests. The unit is embedded so that `tokenagent service install`
// writes the same hardened unit the packages ship.
package packaging

import (
	_ "embed"
	"strings"
)

//go:embed systemd/tokenagent.service
var systemdUnit string

// packagedExecStart is the unit's ExecStart for the packaged binary.
const packagedExecStart = "ExecStart=/usr/bin/tokenagentd --config /etc/tokenagent/agent.toml"

// SystemdUnitTemplate is the unit as a kardianos/service template: the
// ExecStart line takes the installed binary and arguments.
func SystemdUnitTemplate() string {
	return strings.Replace(systemdUnit, packagedExecStart,
		"ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}", 1)
}

// SystemdUnit is the unit for the binary at path with arguments args (each
// a single word without spaces or quotes).
func SystemdUnit(path string, args []string) string {
	return strings.Replace(systemdUnit, packagedExecStart, "ExecStart="+strings.Join(append([]string{path}, args...), " "), 1)
}
