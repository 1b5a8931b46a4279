package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/ipc"
)

// clientExit maps clientlib errors to exit codes with a message that says
// what to do.
func clientExit(err error) error {
	var e *clientlib.Error
	switch {
	case errors.Is(err, clientlib.ErrAgentUnavailable), errors.Is(err, clientlib.ErrShuttingDown):
		return &cli.ExitError{Code: cli.ExitUnreachable, Err: err}
	case errors.Is(err, clientlib.ErrNotFound):
		// The agent at the socket lacks an endpoint this CLI uses: the two
		// are of different versions. Like an absent agent (3), it is the
		// installation to fix, not the profile (4) or the IdP (5).
		return &cli.ExitError{Code: cli.ExitUnreachable, Err: fmt.Errorf("%w (the agent and this tokenagent are of different versions: install matching ones)", err)}
	case errors.Is(err, clientlib.ErrUnknownProfile), errors.Is(err, clientlib.ErrForbidden):
		return &cli.ExitError{Code: cli.ExitDenied, Err: err}
	case (errors.Is(err, clientlib.ErrIdPRefused) || errors.Is(err, clientlib.ErrIdPUnavailable)) && errors.As(err, &e):
		return &cli.ExitError{Code: cli.ExitIdP, Err: fmt.Errorf("identity provider error %s: %s", e.Code, e.Description)}
	case errors.Is(err, clientlib.ErrMinValid):
		// The IdP's tokens do not live that long: asking again cannot help.
		return &cli.ExitError{Code: cli.ExitIdP, Err: err}
	}
	return err
}

// clientFlags are the flags every client command takes.
func clientFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlagSet(name)
	socket := fs.String("socket", "", "the agent's socket `path` (default: $TOKENAGENT_SOCKET, then the default path)")
	return fs, socket
}

// parseCommand parses a subcommand's arguments: flags may come before and
// after its positional arguments (tokenagent token --format json demo,
// tokenagent token demo --format json). It takes want positional
// arguments (missing says what to do when one is absent) and returns
// them and whatever follows them unparsed — for exec, the command after
// "--"; for the others, nothing is allowed there.
func parseCommand(fs *flag.FlagSet, args []string, want int, missing string) (positional, rest []string, err error) {
	name := strings.TrimPrefix(fs.Name(), "tokenagent ")
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, nil, err
		}
		args = fs.Args()
		if len(positional) == want || len(args) == 0 {
			break
		}
		positional, args = append(positional, args[0]), args[1:]
	}
	if len(positional) < want {
		return nil, nil, cli.UsageError{Msg: name + ": " + missing}
	}
	return positional, args, nil
}

// oneProfile parses a command that takes one PROFILE and nothing after it.
func oneProfile(fs *flag.FlagSet, args []string) (string, error) {
	pos, rest, err := parseCommand(fs, args, 1, "name a profile")
	if err != nil {
		return "", err
	}
	if len(rest) > 0 {
		return "", cli.UsageError{Msg: fmt.Sprintf("%s: unexpected arguments %q", strings.TrimPrefix(fs.Name(), "tokenagent "), rest)}
	}
	return pos[0], nil
}

func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, socket := clientFlags("token", stderr)
	minValid := minValid(fs, "least remaining `validity` the token must have: a duration such as 60s or 5m, or whole seconds")
	format := fs.String("format", "plain", "output `format`: plain | json | header | env | curl")
	envVar := fs.String("env", "ACCESS_TOKEN", "variable `name` for --format env")
	profile, err := oneProfile(fs, args)
	if err != nil {
		return err
	}
	switch *format {
	case "plain", "json", "header", "env", "curl":
	default:
		return cli.UsageError{Msg: fmt.Sprintf("token: unknown --format %q (plain, json, header, env, curl)", *format)}
	}
	if !ipc.ValidEnvName(*envVar) {
		return cli.UsageError{Msg: fmt.Sprintf("token: --env %q is not a shell variable name", *envVar)}
	}
	c := &clientlib.Client{Socket: *socket}
	defer c.Close()
	tok, err := c.Token(ctx, profile, clientlib.WithMinValid(*minValid))
	if err != nil {
		return clientExit(err)
	}
	out, err := renderToken(*format, *envVar, tok)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, out)
	return err
}

// renderToken formats tok for --format (ipc.RenderToken, which file
// sinks use too).
func renderToken(format, envVar string, tok *clientlib.Token) (string, error) {
	return ipc.RenderToken(format, envVar, ipc.TokenResponse{AccessToken: tok.AccessToken, TokenType: tok.TokenType,
		Scope: tok.Scope, ExpiresAt: tok.ExpiresAt}, time.Now())
}

func cmdRefresh(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, socket := clientFlags("refresh", stderr)
	profile, err := oneProfile(fs, args)
	if err != nil {
		return err
	}
	c := &clientlib.Client{Socket: *socket}
	defer c.Close()
	cur, err := c.Token(ctx, profile)
	if err != nil {
		return clientExit(err)
	}
	// Reporting the current token as rejected is what makes the agent
	// fetch a new one; a concurrent report of the same token costs nothing more.
	tok, err := c.ReportRejected(ctx, profile, cur.AccessToken)
	if err != nil {
		return clientExit(err)
	}
	if tok.AccessToken == cur.AccessToken {
		fmt.Fprintf(stdout, "%s: kept the current token, valid until %s: the agent forces at most one refresh per profile every 10 s, "+
			"and none while it waits out an IdP failure (see tokenagent status)\n", profile, tok.ExpiresAt.Local().Format(time.DateTime))
		return nil
	}
	fmt.Fprintf(stdout, "%s: new token, valid until %s\n", profile, tok.ExpiresAt.Local().Format(time.DateTime))
	return nil
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, socket := clientFlags("status", stderr)
	asJSON := fs.Bool("json", false, "print JSON (the same as --format json)")
	format := fs.String("format", "table", "output `format`: table | json (agent, profiles and store)")
	if _, rest, err := parseCommand(fs, args, 0, ""); err != nil {
		return err
	} else if len(rest) > 0 {
		return cli.UsageError{Msg: "status takes no arguments"}
	}
	switch *format {
	case "table":
	case "json":
		*asJSON = true
	default:
		return cli.UsageError{Msg: fmt.Sprintf("status: --format %q: use table or json", *format)}
	}
	c := &clientlib.Client{Socket: *socket}
	defer c.Close()
	profiles, err := c.Profiles(ctx)
	if err != nil {
		return clientExit(err)
	}
	health, err := c.Health(ctx)
	if err != nil {
		return clientExit(err)
	}
	now := time.Now()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Agent    *clientlib.AgentInfo      `json:"agent,omitempty"`
			Profiles []clientlib.ProfileStatus `json:"profiles"`
			Store    *clientlib.StoreHealth    `json:"store,omitempty"`
			Doors    []clientlib.DoorHealth    `json:"doors,omitempty"`
		}{health.Agent, profiles, health.Store, health.Doors}); err != nil {
			return err
		}
	} else {
		renderAgent(stdout, health.Agent, now)
		if err := renderStatus(stdout, profiles, now); err != nil {
			return err
		}
		renderStore(stdout, health.Store)
		renderDoors(stdout, health.Doors)
	}
	// Scripts and monitors learn from the exit code whether every profile
	// the user may use can serve a token now.
	for _, p := range profiles {
		if p.LastError != "" && !p.ExpiresAt.After(now) {
			return &cli.ExitError{Code: cli.ExitIdP, Err: quietError{}}
		}
	}
	return nil
}

// renderAgent says which agent answers, with what configuration, since
// when.
func renderAgent(w io.Writer, a *clientlib.AgentInfo, now time.Time) {
	if a == nil {
		return
	}
	fmt.Fprintf(w, "AGENT %s, up %v", ipc.SafeText(a.Version), now.Sub(a.StartedAt).Round(time.Second))
	if a.Config != "" {
		fmt.Fprintf(w, ", config %s", ipc.SafeText(a.Config))
	}
	if !a.ReloadedAt.IsZero() {
		fmt.Fprintf(w, ", reloaded %s", a.ReloadedAt.Local().Format(time.DateTime))
	}
	fmt.Fprint(w, "\n\n")
}

// renderStore adds a line about the token store when it is not well: the
// operator's first question when tokens stop surviving restarts.
func renderStore(w io.Writer, st *clientlib.StoreHealth) {
	if st == nil || st.State == "ok" || st.State == "memory" {
		return
	}
	fmt.Fprintf(w, "\nSTORE %s is %s", ipc.SafeText(st.Path), ipc.SafeText(st.State))
	if st.Error != "" {
		fmt.Fprintf(w, ": %s", ipc.SafeText(st.Error))
	}
	fmt.Fprintf(w, "\n  tokens are served from memory; %d writes pending, %d stalls, %d failed writes. The agent keeps trying; see its log.\n",
		st.PendingWrites, st.Stalls, st.WriteFailures)
}

// renderDoors adds a line per TCP door address that is down: clients of
// that door reach another process, or nothing, until it is bound.
func renderDoors(w io.Writer, doors []clientlib.DoorHealth) {
	for _, d := range doors {
		if d.State == "up" {
			continue
		}
		fmt.Fprintf(w, "\nDOOR %s %s is %s: %s\n", ipc.SafeText(d.Door), ipc.SafeText(d.Address), ipc.SafeText(d.State), ipc.SafeText(d.Error))
	}
}

// renderStatus writes the status table. Names and errors come from the
// agent, and errors from the IdP before it: control and format characters
// are dropped so that nothing reaches the terminal but text.
func renderStatus(w io.Writer, profiles []clientlib.ProfileStatus, now time.Time) error {
	sort.Slice(profiles, func(i, j int) bool { return profiles[i].Name < profiles[j].Name })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tEXPIRES IN\tLAST REFRESH\tIDP REQUESTS\tLAST ERROR")
	for _, p := range profiles {
		expires := "no token"
		if !p.ExpiresAt.IsZero() {
			expires = untilOrExpired(p.ExpiresAt, now)
		}
		if p.Idle {
			expires += " (idle)"
		}
		if p.SinkStale {
			expires += " (file sink stale)"
		}
		if a := p.AssertionExpiresAt; !a.IsZero() { // the platform's token the agent authenticates with
			if left := untilOrExpired(a, now); left == "expired" {
				expires += " (assertion expired)"
			} else {
				expires += " (assertion expires in " + left + ")"
			}
		}
		last := "never"
		switch {
		case p.Origin == "store", p.Origin == "fleet": // the token held is not this agent's fetch
			last = "from " + p.Origin + ": " + p.ObtainedAt.Local().Format(time.DateTime)
		case !p.LastRefresh.IsZero():
			last = p.LastRefresh.Local().Format(time.DateTime)
		}
		if p.Fleet != "" {
			last += " [" + p.Fleet
			if p.MintedBy != "" {
				last += ", minted by " + p.MintedBy
			}
			last += "]"
		}
		lastErr := "-"
		if p.LastError != "" {
			lastErr = p.LastError
			if !p.NextAttempt.IsZero() {
				lastErr += fmt.Sprintf(" (retry in %v)", p.NextAttempt.Sub(now).Round(time.Second))
			}
		} else if p.ClockSkewSeconds != 0 {
			lastErr = fmt.Sprintf("clock skew: the token's exp is %+.0fs from the IdP's expires_in on this host's clock (check NTP)", p.ClockSkewSeconds)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", ipc.SafeText(p.Name), expires, last, p.UpstreamRequests, ipc.SafeText(lastErr))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := renderBudgets(w, profiles, now); err != nil {
		return err
	}
	return renderCallers(w, profiles, now)
}

// renderCallers lists, for root, the callers each profile admitted lately
// and the allow rule that admitted each.
func renderCallers(w io.Writer, profiles []clientlib.ProfileStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, p := range profiles {
		for _, c := range p.Callers {
			if !header {
				fmt.Fprintln(tw, "\nRECENT CALLERS\nPROFILE\tUID\tPID\tADMITTED BY\tLAST ASKED")
				header = true
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%v ago\n", ipc.SafeText(p.Name), c.UID, c.PID, ipc.SafeText(c.Rule), now.Sub(c.Last).Round(time.Second))
		}
	}
	return tw.Flush()
}

// renderBudgets writes the budgets' table, when any profile has one: the
// period's use against the limit, and where the period ends at the rate
// seen so far. A client id's budget shows once, under its first profile.
func renderBudgets(w io.Writer, profiles []clientlib.ProfileStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header, seen := false, map[string]bool{}
	for _, p := range profiles {
		for _, b := range p.Budgets {
			budgetFor := "profile " + ipc.SafeText(p.Name)
			if b.For == "client_id" {
				if seen[b.ClientID] {
					continue
				}
				seen[b.ClientID] = true
				budgetFor = "client_id " + ipc.SafeText(b.ClientID)
			}
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintln(tw, "BUDGET\tUSED/LIMIT\tPROJECTED\tPERIOD ENDS IN\tCOUNTED")
				header = true
			}
			counted := ipc.SafeText(b.Counted)
			switch {
			case b.Paused:
				counted += ", enforced: paused until the period ends"
			case b.Enforced:
				counted += ", enforced"
			}
			fmt.Fprintf(tw, "%s\t%d/%d per %s (%.0f%%)\t%d\t%v\t%s\n", budgetFor, b.Used, b.Limit, ipc.SafeText(b.Period),
				100*float64(b.Used)/float64(max(b.Limit, 1)), b.Projected, b.PeriodEnd.Sub(now).Round(time.Second), counted)
		}
	}
	return tw.Flush()
}

// untilOrExpired is how long until t, or "expired".
func untilOrExpired(t, now time.Time) string {
	if t.Before(now) {
		return "expired"
	}
	return t.Sub(now).Round(time.Second).String()
}

func cmdInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, socket := clientFlags("inspect", stderr)
	profile, err := oneProfile(fs, args)
	if err != nil {
		return err
	}
	c := &clientlib.Client{Socket: *socket}
	defer c.Close()
	tok, err := c.Token(ctx, profile)
	if err != nil {
		return clientExit(err)
	}
	left := time.Until(tok.ExpiresAt).Round(time.Second)
	header, claims, ok := decodeJWT(tok.AccessToken)
	if !ok {
		fmt.Fprintf(stdout, "%s: opaque token (not a JWT), %d characters; nothing to decode.\nexpires: %s (in %v, as the agent reckons)\n",
			profile, len(tok.AccessToken), tok.ExpiresAt.Local().Format(time.RFC3339), left)
		return nil
	}
	fmt.Fprintf(stdout, "%s: JWT (signature not checked)\n", profile)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	fmt.Fprintln(stdout, "header:")
	enc.Encode(header)
	fmt.Fprintln(stdout, "claims:")
	enc.Encode(claims)
	for _, name := range []string{"iat", "nbf", "exp"} {
		if v, ok := claims[name].(json.Number); ok {
			if secs, err := v.Int64(); err == nil {
				t := time.Unix(secs, 0)
				fmt.Fprintf(stdout, "%s: %s (%s)\n", name, t.Local().Format(time.RFC3339), relative(time.Until(t)))
			}
		}
	}
	return nil
}

func relative(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		return fmt.Sprintf("%v ago", -d)
	}
	return fmt.Sprintf("in %v", d)
}

// decodeJWT decodes a compact JWS's header and claims without verifying it.
func decodeJWT(token string) (header, claims map[string]any, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, false
	}
	decode := func(seg string) (map[string]any, bool) {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
		if err != nil {
			return nil, false
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.UseNumber()
		var m map[string]any
		if dec.Decode(&m) != nil {
			return nil, false
		}
		return m, true
	}
	header, ok1 := decode(parts[0])
	claims, ok2 := decode(parts[1])
	return header, claims, ok1 && ok2
}

func cmdExec(ctx context.Context, args []string, stderr io.Writer) error {
	fs, socket := clientFlags("exec", stderr)
	envVar := fs.String("env", "ACCESS_TOKEN", "environment variable `name` that carries the token")
	minValid := minValid(fs, "least remaining `validity` the token must have, e.g. 5m for a long job (or whole seconds)")
	forClient := fs.String("for", "", "`kind`: instead of a token, give the command the environment that points its own OAuth client at the agent's token endpoint: "+forClientHelp)
	https := fs.Bool("https", false, "with --for, "+httpsHelp)
	// Flags may follow the profile; parsing stops at "--" or the command.
	pos, cmdArgs, err := parseCommand(fs, args, 1, "usage: tokenagent exec PROFILE [--env VAR] -- CMD [ARG…]")
	if err != nil {
		return err
	}
	profile := pos[0]
	if len(cmdArgs) == 0 {
		return cli.UsageError{Msg: "exec: no command; usage: tokenagent exec PROFILE [--env VAR] -- CMD [ARG…]"}
	}
	if !ipc.ValidEnvName(*envVar) {
		return cli.UsageError{Msg: fmt.Sprintf("exec: --env %q is not a variable name", *envVar)}
	}
	if *forClient != "" {
		if err := checkForClient("exec", *forClient); err != nil {
			return err
		}
	}
	c := &clientlib.Client{Socket: *socket}
	defer c.Close()
	env := os.Environ()
	if *forClient != "" {
		lines, err := clientEnv(ctx, c, profile, *forClient, *https)
		if err != nil {
			return err
		}
		for _, l := range lines {
			env = append(env, l[0]+"="+l[1])
		}
	} else {
		tok, err := c.Token(ctx, profile, clientlib.WithMinValid(*minValid))
		if err != nil {
			return clientExit(err)
		}
		env = append(env, *envVar+"="+tok.AccessToken)
	}
	c.Close() // the command may run for hours: keep no connection open
	cmd := exec.Command(cmdArgs[0], cmdArgs[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Signals for us are for the command: forward them and wait for it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		// As a shell says it: 127 for a command that is not there, 126 for
		// one that cannot be run.
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		return &cli.ExitError{Code: code, Err: fmt.Errorf("exec %s: %w", cmdArgs[0], err)}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return &cli.ExitError{Code: code, Err: quietError{}}
	}
	return err
}

// quietError ends the program with a code but no message: the command
// already said what it had to.
type quietError struct{}

func (quietError) Error() string { return "" }
