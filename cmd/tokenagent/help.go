package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// exitCodesHelp is the exit-code list every command's help ends with.
const exitCodesHelp = `exit codes: 0 ok, 1 error, 2 usage, 3 agent not reachable (or not trusted, or
of another version), 4 forbidden, unknown profile or permission denied on the
socket, 5 identity provider error (or min_valid cannot be met)`

// commandHelp is what `tokenagent CMD --help` says about CMD besides its
// flags: the arguments, what it does, and an example that works against
// `tokenagentd --dev` (profile demo).
var commandHelp = map[string]struct{ args, about, example string }{
	"token": {"PROFILE", `Print a token for PROFILE on stdout (nothing else goes there). The agent
answers from its cache, or fetches one token for all callers at once.`,
		`tokenagent token demo --format header`},
	"exec": {"PROFILE [--for KIND] -- CMD [ARG...]", `Run CMD with a token for PROFILE in $ACCESS_TOKEN (see --env), or, with
--for, with the environment that points CMD's own OAuth client at the
agent's token endpoint. CMD's exit status passes through (127: not found,
126: not executable); signals are forwarded to it.`,
		`tokenagent exec demo -- sh -c 'curl -H "Authorization: Bearer $ACCESS_TOKEN" https://api.example.com/'`},
	"env": {"PROFILE --for KIND", `Print shell exports that point an unmodified OAuth client at the agent's
loopback token endpoint for PROFILE (the agent needs token_endpoint set).`,
		`eval "$(tokenagent env demo --for oauth)"`},
	"refresh": {"PROFILE", `Make the agent fetch a new token for PROFILE now. The current token is
served until the new one arrives, and kept if the IdP fails; the agent
forces at most one refresh per profile every 10 s, and none while it
waits out an IdP failure (a reload of its configuration ends that wait).`,
		`tokenagent refresh demo`},
	"status": {"", `Show the profiles you may use: expiry, last refresh, IdP requests, last
error; and the token store when it is not well. It exits 5 when a
profile cannot serve a token.`,
		`tokenagent status --format json`},
	"health": {"", `Ask the agent whether it is alive (GET /v1/health): exit 0 whenever it
answers, 3 when it cannot be reached or does not answer in time. A profile
that cannot serve a token (a wrong secret, an IdP outage) does not fail it:
a liveness probe that restarted the agent for that would only ask the IdP
again. With --ready it exits 5 while a profile you may use cannot serve.`,
		`tokenagent health --ready`},
	"inspect": {"PROFILE", `Decode the header and claims of PROFILE's token (a JWT) without verifying
it; the signature is not printed.`,
		`tokenagent inspect demo`},
}

// help renders CMD's help: usage line, description, flags in the --flag
// form the docs use, with defaults, an example and the exit codes.
func help(fs *flag.FlagSet) string {
	name := strings.TrimPrefix(fs.Name(), "tokenagent ")
	h := commandHelp[name]
	var b strings.Builder
	fmt.Fprintf(&b, "usage: tokenagent %s", name)
	if h.args != "" {
		fmt.Fprintf(&b, " %s", h.args)
	}
	fmt.Fprintf(&b, " [flags]\n\n%s\n\nflags:\n", h.about)
	writeFlags(&b, fs)
	fmt.Fprintf(&b, "\nexample:\n  %s\n\n%s\n", h.example, exitCodesHelp)
	return b.String()
}

// writeFlags lists fs's flags as --name ARG, usage and default.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if arg != "" {
			left += " " + strings.ToUpper(arg)
		}
		line := fmt.Sprintf("  %-22s %s", left, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			line += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintln(w, line)
	})
}

// minValidFlag is --min-valid, read as the socket reads min_valid
// (ipc.ParseMinValid): "60" and "60s" mean the same, negatives are refused.
type minValidFlag struct{ d *time.Duration }

func (f minValidFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "0s"
	}
	return f.d.String()
}

func (f minValidFlag) Set(v string) error {
	d, err := ipc.ParseMinValid(v)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// minValid adds --min-valid to fs.
func minValid(fs *flag.FlagSet, usage string) *time.Duration {
	d := new(time.Duration)
	fs.Var(minValidFlag{d}, "min-valid", usage)
	return d
}
