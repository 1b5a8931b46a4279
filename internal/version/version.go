// Package version says which build of tokenagent is running; both
// binaries print it. Release builds set it with
//
//	-ldflags "-X github.com/tokenagent/tokenagent/internal/version.version=1.2.3"
package version

import "runtime/debug"

// version is set at build time.
var version = ""

// String is the version: the one set at build time, else the module
// version go install recorded, else "(devel)".
func String() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
