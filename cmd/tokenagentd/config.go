package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/agent"
	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/ipc"
)

func versionString() string { return "tokenagentd " + ipc.Version() }

// loadConfig reads path; with no path, the default file if it exists,
// else the Zeebe/Camunda environment variables if any are set.
func loadConfig(path string) (*config.Config, error) {
	explicit := path != ""
	if !explicit {
		path = config.DefaultConfigPath()
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if !explicit && config.HasZeebeEnv(os.Getenv) {
			return config.ConfigFromEnv(os.Getenv)
		}
		return nil, fmt.Errorf("no configuration at %s; pass --config FILE (see agent.toml.example), set the ZEEBE_* variables, or try `tokenagentd --dev`", path)
	}
	return secretref.LoadConfig(path)
}

func cmdCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check-config")
	configFlag := fs.String("config", "", "the configuration `file` (or give it as FILE)")
	socketFlag := fs.String("socket", "", "the socket `path` the agent would be started with")
	online := fs.Bool("online", false, "also ask each profile's IdP for one token (discarded, never printed, no file or store written), and report its answer")
	asUser := fs.String("as", "", "check directories and secret files as `user` (the user the service runs as; default as root: "+packageUser+" if it exists)")
	var positional []string
	for { // FILE may come before or after the flags
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional, args = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
	if len(positional) > 1 || len(positional) == 1 && *configFlag != "" {
		return cli.UsageError{Msg: "check-config takes one configuration: FILE or --config FILE"}
	}
	if len(positional) == 1 {
		*configFlag = positional[0]
	}
	path, err := absPath(*configFlag)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	if err := cfg.CheckServes(); err != nil {
		return err
	}
	as, err := serviceUser(*asUser)
	if err != nil {
		return err
	}
	socket := ipc.SocketPath(*socketFlag, cfg.Socket)
	// The very checks start makes, as the user the service will run as.
	if err := daemon.CheckDirs(cfg, cfg.Path(), socket, as.uid); err != nil {
		return as.explain(err)
	}
	if as.user != nil {
		if err := secretref.CheckReadableAs(cfg, as.user); err != nil {
			return err
		}
	}
	// Building the agent reads every secret and key, so a missing env var
	// or a wrong PKCS#12 password shows up here, not at 3 a.m.
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.CheckAssertions(); err != nil {
		return err
	}
	where, err := agent.CheckStore(cfg)
	if err != nil {
		return err
	}
	names := cfg.ProfileNames()
	fmt.Fprintf(stdout, "%s: ok, %d profile(s): %s\ntokens: %s\nsocket: %s\n", cfg.Path(), len(names), strings.Join(names, ", "), where, socket)
	if hint := ipc.SocketHint(socket); hint != "" {
		fmt.Fprintf(stdout, "  clients find it with: %s\n", hint)
	}
	for _, w := range secretref.Warnings(cfg) {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if m := cfg.MetricsListen; m != "" && !config.LoopbackListen(m) {
		fmt.Fprintf(stderr, "warning: metrics_listen = %q is reachable from other hosts: /metrics has no access control and names every profile; "+
			"bind it to 127.0.0.1 (or ::1) unless a firewall or network policy restricts it\n", m)
	}
	fl, flClose, err := agent.DialFleet(cfg)
	if err != nil {
		return err
	}
	if fl != nil {
		defer flClose.Close()
		fmt.Fprintf(stdout, "fleet: %v; this agent is %q\n", fl, agent.FleetHost(cfg))
		if local := cfg.LocalProfiles(); len(local) > 0 {
			fmt.Fprintf(stdout, "  kept to this host (fleet = false): %s\n", strings.Join(local, ", "))
		}
	}
	if *online {
		if fl != nil {
			if err := fl.Check(ctx); err != nil {
				fmt.Fprintf(stdout, "fleet: FAILED: %v\n", err)
				return &cli.ExitError{Code: cli.ExitIdP, Err: fmt.Errorf("the fleet cannot be used; the agent would fetch for this host alone")}
			}
			fmt.Fprintln(stdout, "fleet: ok, etcd answers and the seal key is the fleet's")
		}
		// A second agent for the IdP requests, with no file sinks: the
		// tokens it gets are dropped, never written anywhere.
		quiet, err := agent.New(withoutSinks(cfg), agent.Options{})
		if err != nil {
			return err
		}
		defer quiet.Close()
		return checkOnline(ctx, quiet, names, stdout)
	}
	return nil
}

// withoutSinks is cfg with no profile's file sinks.
func withoutSinks(cfg *config.Config) *config.Config {
	c := *cfg
	c.Profiles = make(map[string]*config.ProfileConfig, len(cfg.Profiles))
	for name, p := range cfg.Profiles {
		q := *p
		q.Files = nil
		c.Profiles[name] = &q
	}
	return &c
}

// checkOnline asks each profile's IdP for one token, as the agent would
// (discovery included), and reports each answer; the tokens are dropped
// unseen. It fails when any profile cannot get one.
func checkOnline(ctx context.Context, a *agent.Agent, names []string, stdout io.Writer) error {
	self := ipc.Caller{UID: uint32(os.Geteuid())}
	failed := 0
	for _, name := range names {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		tok, err := a.Token(ctx, self, name, 0)
		cancel()
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "profile %s: FAILED: %v\n", name, err)
			continue
		}
		fmt.Fprintf(stdout, "profile %s: ok, the IdP issued a token valid for %v\n", name, time.Until(tok.ExpiresAt).Round(time.Second))
	}
	if failed > 0 {
		return &cli.ExitError{Code: cli.ExitIdP, Err: fmt.Errorf("%d of %d profiles could not get a token", failed, len(names))}
	}
	return nil
}
