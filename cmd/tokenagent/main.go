// Command tokenagent is the token agent's client: it asks the local agent
// (tokenagentd) for tokens over its socket and prints them, runs commands
// with them, and shows what the agent holds. It is deliberately small — it
// links clientlib and the ipc wire package, nothing of the daemon — so
// that a script calling it many times pays little for each start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/ipc"
)

func main() {
	// exec forwards signals to its command; the other commands are short
	// and end with the default signal behaviour.
	code := exitCode(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	os.Exit(code)
}

// exitCode says err and returns the code to exit with (cli.ExitCode).
func exitCode(err error, stderr io.Writer) int { return cli.ExitCode(err, "tokenagent", stderr) }

const usage = `usage: tokenagent COMMAND [flags]

commands:
  token PROFILE [--min-valid D] [--format plain|json|header|env|curl] [--env VAR]
                                                 print a token
  exec PROFILE [--env VAR] [--min-valid D] -- CMD [ARG...]
                                                 run CMD with the token in $VAR (ACCESS_TOKEN)
  env PROFILE --for zeebe|camunda|oauth          print the environment that points an unmodified
                                                 client at the agent's token endpoint (exec --for
                                                 runs a command with it)
  refresh PROFILE                                make the agent fetch a new token
  status [--json]                                the profiles you may use and their state
  health [--ready]                               exit 0 if the agent answers (for liveness probes);
                                                 --ready: and every profile you may use can serve
  inspect PROFILE                                decode the token's JWT header and claims
  version                                        print the version

Client commands take --socket PATH (default: $TOKENAGENT_SOCKET, then the
default socket). Exit codes: 0 ok, 1 error, 2 usage, 3 agent not reachable,
4 forbidden or unknown profile, 5 identity provider error.

The agent itself is tokenagentd (run, check-config, service).
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.ShowHelp(dispatch(ctx, args, stdout, stderr), stdout)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.UsageError{Msg: "no command given"}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "token":
		return cmdToken(ctx, rest, stdout, stderr)
	case "exec":
		return cmdExec(ctx, rest, stderr)
	case "env":
		return cmdEnv(ctx, rest, stdout, stderr)
	case "refresh":
		return cmdRefresh(ctx, rest, stdout, stderr)
	case "status":
		return cmdStatus(ctx, rest, stdout, stderr)
	case "health":
		return cmdHealth(ctx, rest, stdout, stderr)
	case "inspect":
		return cmdInspect(ctx, rest, stdout, stderr)
	case "run", "check-config", "service":
		return cli.UsageError{Msg: fmt.Sprintf("%q is the daemon's: use `tokenagentd %s`", cmd, cmd)}
	case "version", "--version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return cli.UsageError{Msg: fmt.Sprintf("unknown command %q", cmd)}
	}
}

// newFlagSet returns the flag set of command name (cli.NewFlagSet).
func newFlagSet(name string) *flag.FlagSet { return cli.NewFlagSet("tokenagent " + name) }

// parseFlags parses args (cli.ParseFlags); its usage errors name the
// command.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := cli.ParseFlags(fs, args, func() string { return help(fs) })
	var ue cli.UsageError
	if errors.As(err, &ue) {
		return cli.UsageError{Msg: strings.TrimPrefix(fs.Name(), "tokenagent ") + ": " + ue.Msg}
	}
	return err
}

func versionString() string { return "tokenagent " + ipc.Version() }
