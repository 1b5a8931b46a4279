package config_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestConfigIsPure: configuration links no network, user-database,
// etcd or bbolt code, so that nothing it does can reach them (net/netip
// and net/url are parsing only).
func TestConfigIsPure(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skipf("no go command at %s: %v", goBin, err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "net", dep == "net/http", dep == "os/user",
			strings.HasPrefix(dep, "go.etcd.io/"), strings.Contains(dep, "bbolt"):
			t.Errorf("agent/config depends on %s; configuration must stay pure data", dep)
		}
	}
}
