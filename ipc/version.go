package ipc

import "runtime/debug"

// version is set at build time, by release builds:
//
//	-ldflags "-X github.com/tokenagent/tokenagent/ipc.version=1.2.3"
//
// It lives in the wire package because the wire reports it (AgentInfo,
// /metrics' build info) and both binaries print it.
var version = ""

// Version says which build of tokenagent is running: the version set at
// build time, else the module version go install recorded, else
// "(devel)".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
