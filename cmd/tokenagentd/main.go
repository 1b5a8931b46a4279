// Command tokenagentd is the token agent's daemon: it runs in the
// foreground by default (as a systemd or launchd service, a Kubernetes
// DaemonSet, or by hand), and holds the tools operators use beside it:
// check-config, service and version. The client commands are in
// tokenagent, a separate small binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tokenagent/tokenagent/cmd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitCode(run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitCode says err and returns the code to exit with (cli.ExitCode).
func exitCode(err error, stderr io.Writer) int { return cli.ExitCode(err, "tokenagentd", stderr) }

const usage = `usage: tokenagentd [--config FILE] [--socket PATH] [--dev]
       tokenagentd COMMAND [flags]

With no command, run the agent in the foreground (SIGHUP reloads the
configuration, SIGTERM or Ctrl-C drains requests in flight and stops):
  --config FILE   configuration (default: /etc/tokenagent/agent.toml as root,
                  else $XDG_CONFIG_HOME/tokenagent/agent.toml)
  --socket PATH   socket (default: $TOKENAGENT_SOCKET, the config's socket,
                  then /run/tokenagent/agent.sock as root
                  (/var/run/tokenagent/agent.sock on macOS) or
                  $XDG_RUNTIME_DIR/tokenagent/agent.sock)
  --dev           run with a built-in demo identity provider and a "demo"
                  profile on a socket of its own

commands:
  check-config [FILE] [--online] [--socket PATH] [--as USER]
                             validate a configuration as start would, secrets,
                             keys, directories and the store's records
                             included, as the service's user; print where
                             tokens and the socket will be; --online also asks
                             each profile's IdP for one token (exit 5 if one
                             fails)
  service install|uninstall|start|stop|restart|status [--config FILE] [--user] [--as USER]
                             manage the systemd/launchd/SysV/Windows service
  version                    print the version

The client commands (token, exec, refresh, status, inspect) are in the
tokenagent binary.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.ShowHelp(dispatch(ctx, args, stdout, stderr), stdout)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd, rest := "", args
	if len(args) > 0 && (args[0] != "" && args[0][0] != '-' || args[0] == "--version") {
		cmd, rest = strings.TrimPrefix(args[0], "--"), args[1:]
	}
	switch cmd {
	case "", "run": // "run" is accepted for units written for the single binary
		return cmdRun(ctx, rest, stderr)
	case "check-config":
		return cmdCheckConfig(ctx, rest, stdout, stderr)
	case "service":
		return cmdService(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "token", "exec", "refresh", "status", "inspect":
		return cli.UsageError{Msg: fmt.Sprintf("%q is a client command: use `tokenagent %s`", cmd, cmd)}
	default:
		fmt.Fprint(stderr, usage)
		return cli.UsageError{Msg: fmt.Sprintf("unknown command %q", cmd)}
	}
}

// newFlagSet returns the flag set of command name, "" for the daemon
// itself (cli.NewFlagSet).
func newFlagSet(name string) *flag.FlagSet {
	return cli.NewFlagSet(strings.TrimSpace("tokenagentd " + name))
}

// commandHelp is each command's help; "" is the daemon itself.
var commandHelp = map[string]string{
	"": usage,
	"check-config": `usage: tokenagentd check-config [FILE] [--config FILE] [--socket PATH] [--as USER] [--online]

Validate a configuration as start would: every secret and key is read, the
store's records must open with its keys, the directories of the socket,
store, configuration and keys pass the same ownership checks, and a
configuration without profiles is refused. Print where tokens and the
socket will be (and the export line clients need), warn of likely
mistakes. --online also asks each profile's IdP for one token (discarded,
never printed; no file sink or store is written).

--as USER judges directories and secret files as USER, the user the
service runs as: a secret only root can read is refused. As root it
defaults to the package's user (tokenagent; _tokenagent on macOS) where
that user exists; --as root checks as root.

example:
  tokenagentd check-config /etc/tokenagent/agent.toml --online

exit codes: 0 ok, 1 the configuration would not start, 2 usage,
5 --online: an IdP would not issue a token
`,
	"service": `usage: tokenagentd service install|uninstall|start|stop|restart|status [--config FILE] [--user] [--as USER] [--name NAME]

Manage tokenagentd as a service: the packaged hardened systemd unit (it
runs as user tokenagent), a launchd job (as _tokenagent where it exists)
or a Windows service. On Linux without systemd, an init script of ours
runs it as user tokenagent (--as USER for another), making its socket and
store directories and handing it the store key as systemd would; other
init systems are refused with what to do. install refuses what the agent,
run as that user, would refuse (as check-config does). start returns once
the agent's socket answers, or fails with the agent's last log lines;
status says why a stopped agent is not running. --user installs a
per-user service (systemd --user, a launchd agent); --name a second
service beside the first.

example:
  sudo tokenagentd service install --config /etc/tokenagent/agent.toml
  sudo tokenagentd service start

exit codes: 0 ok, 1 error, 2 usage
`,
}

// parseFlags parses args (cli.ParseFlags), with each command's help.
func parseFlags(fs *flag.FlagSet, args []string) error {
	return cli.ParseFlags(fs, args, func() string {
		return commandHelp[strings.TrimSpace(strings.TrimPrefix(fs.Name(), "tokenagentd"))]
	})
}

// oneArg parses flags that may come before or after a single argument;
// missing says what to do when it is absent.
func oneArg(fs *flag.FlagSet, args []string, missing string) (string, error) {
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", cli.UsageError{Msg: missing}
	}
	arg := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", cli.UsageError{Msg: fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	return arg, nil
}

// absPath resolves a path given on the command line once, at start, so
// that everything derived from it (the store key beside the config, the
// file SIGHUP re-reads) means the same file later.
func absPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return abs, nil
}
