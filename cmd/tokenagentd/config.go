package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/internal/version"
)

func versionString() string { return "tokenagentd " + version.String() }

// loadConfig reads path; with no path, the default file if it exists,
// else the Zeebe/Camunda environment variables if any are set.
func loadConfig(path string) (*agent.Config, error) {
	explicit := path != ""
	if !explicit {
		path = agent.DefaultConfigPath()
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if !explicit && agent.HasZeebeEnv(os.Getenv) {
			return agent.ConfigFromEnv(os.Getenv)
		}
		return nil, fmt.Errorf("no configuration at %s; pass --config FILE (see agent.toml.example), set the ZEEBE_* variables, or try `tokenagentd --dev`", path)
	}
	return agent.LoadConfig(path)
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check-config", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError{"check-config takes at most one FILE"}
	}
	path, err := absPath(fs.Arg(0))
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	// Building the agent reads every secret and key, so a missing env var
	// or a wrong PKCS#12 password shows up here, not at 3 a.m.
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	where, err := cfg.CheckStore()
	if err != nil {
		return err
	}
	names := cfg.ProfileNames()
	fmt.Fprintf(stdout, "%s: ok, %d profile(s): %s\ntokens: %s\n", cfg.Path(), len(names), strings.Join(names, ", "), where)
	if m := cfg.MetricsListen; m != "" && !loopbackAddress(m) {
		fmt.Fprintf(stderr, "warning: metrics_listen = %q is reachable from other hosts: /metrics has no access control and names every profile; "+
			"bind it to 127.0.0.1 (or ::1) unless a firewall or network policy restricts it\n", m)
	}
	return nil
}

// loopbackAddress reports whether a listen address binds only loopback.
func loopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
