package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
)

// cmdHealth asks the agent about itself (GET /v1/health), for probes and
// monitors. Plain, it fails only when the agent is broken or gone: a
// profile that cannot serve (a wrong secret, an IdP outage) is the IdP's
// trouble, and restarting the agent would only ask the IdP again. With
// --ready it fails too while a profile the caller may use cannot serve.
func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, socket := clientFlags("health", stderr)
	ready := fs.Bool("ready", false, "also fail (exit 5) while a profile you may use cannot serve a token")
	timeout := fs.Duration("timeout", 5*time.Second, "give up on an agent that does not answer within this `duration`")
	if _, rest, err := parseCommand(fs, args, 0, ""); err != nil {
		return err
	} else if len(rest) > 0 {
		return cli.UsageError{Msg: "health takes no arguments"}
	}
	c := &clientlib.Client{Socket: *socket, Timeout: *timeout}
	defer c.Close()
	h, err := c.Health(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// A hung agent is as broken as an absent one, for a probe.
		return &cli.ExitError{Code: cli.ExitUnreachable, Err: fmt.Errorf("the agent at %s did not answer within %s (--timeout): it is hung; restart it: %w", c.SocketPath(), *timeout, context.DeadlineExceeded)}
	} else if err != nil {
		return clientExit(err)
	}
	if *ready && len(h.Degraded) > 0 {
		return &cli.ExitError{Code: cli.ExitIdP, Err: fmt.Errorf("not ready: %s cannot serve a token now (tokenagent status says why)", strings.Join(h.Degraded, ", "))}
	}
	version := ""
	if h.Agent != nil {
		version = " " + h.Agent.Version
	}
	fmt.Fprintf(stdout, "%s: agent%s answers\n", h.Status, version)
	return nil
}
