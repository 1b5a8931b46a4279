// Command tokenagentd is the token agent's daemon: it runs in the
// foreground by default (as a systemd or launchd service, a Kubernetes
// DaemonSet, or by hand), and holds the tools operators use beside it:
// check-config, service and version. The client commands are in
// tokenagent, a separate small binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// Exit codes (see DESIGN.md, Command line).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitIdP     = 5 // check-config --online: an IdP would not issue a token
)

// exitError ends the program with code after printing err.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// usageError makes run exit with exitUsage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitCode(run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(stderr, "tokenagentd:", err)
	var ue usageError
	var ee *exitError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ee):
		return ee.code
	}
	return exitFailure
}

const usage = `usage: tokenagentd [--config FILE] [--socket PATH] [--dev]
       tokenagentd COMMAND [flags]

With no command, run the agent in the foreground (SIGHUP reloads the
configuration, SIGTERM or Ctrl-C drains requests in flight and stops):
  --config FILE   configuration (default: /etc/tokenagent/agent.toml as root,
                  else $XDG_CONFIG_HOME/tokenagent/agent.toml)
  --socket PATH   socket (default: $TOKENAGENT_SOCKET, the config's socket,
                  then /run/tokenagent/agent.sock as root or
                  $XDG_RUNTIME_DIR/tokenagent/agent.sock)
  --dev           run with a built-in demo identity provider and a "demo"
                  profile on a socket of its own

commands:
  check-config [FILE] [--online] [--socket PATH]
                             validate a configuration, secrets, keys and the
                             store's records included; print where tokens and
                             the socket will be; --online also asks each
                             profile's IdP for one token (exit 5 if one fails)
  service install|uninstall|start|stop|restart|status [--config FILE] [--user]
                             manage the systemd/launchd/Windows service
  version                    print the version

The client commands (token, exec, refresh, status, inspect) are in the
tokenagent binary.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd, rest := "", args
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "", "run": // "run" is accepted for units written for the single binary
		return cmdRun(ctx, rest, stderr)
	case "check-config":
		return cmdCheckConfig(ctx, rest, stdout, stderr)
	case "service":
		return cmdService(rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "token", "exec", "refresh", "status", "inspect":
		return usageError{fmt.Sprintf("%q is a client command: use `tokenagent %s`", cmd, cmd)}
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

// newFlagSet returns a flag set whose errors surface as usage errors.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tokenagentd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

// oneArg parses flags that may come before or after a single argument;
// missing says what to do when it is absent.
func oneArg(fs *flag.FlagSet, args []string, missing string) (string, error) {
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", usageError{missing}
	}
	arg := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
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
