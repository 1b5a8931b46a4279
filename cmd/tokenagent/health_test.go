package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/cmd/internal/cli"
)

// TestHealthFailsOnlyWhenTheAgentIsBroken: `tokenagent health`, the
// Kubernetes liveness probe, passes while a profile cannot serve (one
// wrong secret must not restart the node's agent, which would only ask
// the IdP again); --ready, the readiness probe, fails then; both fail when
// no agent answers, or one that accepts and never answers.
func TestHealthFailsOnlyWhenTheAgentIsBroken(t *testing.T) {
	if _, _, code := runCLI("token", "broken"); code != cli.ExitIdP {
		t.Fatalf("token broken: exit %d, want %d (the IdP refuses its secret)", code, cli.ExitIdP)
	}
	stdout, stderr, code := runCLI("health")
	if code != 0 || !strings.HasPrefix(stdout, "ok: agent ") {
		t.Errorf("health with a profile that cannot serve: exit %d, stdout %q, stderr %q; want 0: the agent itself is alive", code, stdout, stderr)
	}
	stdout, stderr, code = runCLI("health", "--ready")
	if code != cli.ExitIdP || stdout != "" || !strings.Contains(stderr, "not ready: broken cannot serve") {
		t.Errorf("health --ready with broken degraded: exit %d, stdout %q, stderr %q; want %d naming broken", code, stdout, stderr, cli.ExitIdP)
	}

	if _, stderr, code := runCLI("health", "--socket", filepath.Join(cliDir, "nothing.sock")); code != cli.ExitUnreachable {
		t.Errorf("health with no agent: exit %d (%s), want %d", code, stderr, cli.ExitUnreachable)
	}

	// An agent that is stuck: it accepts and never answers.
	hung := filepath.Join(t.TempDir(), "hung.sock")
	ln, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	if _, stderr, code := runCLI("health", "--socket", hung, "--timeout", "300ms"); code != cli.ExitUnreachable || !strings.Contains(stderr, hung) {
		t.Errorf("health against an agent that never answers: exit %d (%s), want %d naming the socket", code, stderr, cli.ExitUnreachable)
	}
}
