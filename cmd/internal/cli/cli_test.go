package cli_test

import (
	"bytes"
	"errors"
	"flag"
	"os/exec"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/cmd/internal/cli"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"nil", nil, cli.ExitOK, ""},
		{"help", flag.ErrHelp, cli.ExitOK, ""},
		{"failure", errors.New("boom"), cli.ExitFailure, "prog: boom\n"},
		{"usage", cli.UsageError{Msg: "no command given"}, cli.ExitUsage, "prog: no command given\n"},
		{"exit", &cli.ExitError{Code: cli.ExitIdP, Err: errors.New("refused")}, cli.ExitIdP, "prog: refused\n"},
		{"quiet exit", &cli.ExitError{Code: cli.ExitDenied, Err: errors.New("")}, cli.ExitDenied, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := cli.ExitCode(tt.err, "prog", &stderr); code != tt.code || stderr.String() != tt.stderr {
				t.Errorf("ExitCode(%v) = %d, %q; want %d, %q", tt.err, code, stderr.String(), tt.code, tt.stderr)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	fs := cli.NewFlagSet("prog cmd")
	fs.Bool("json", false, "")
	var stdout bytes.Buffer
	if err := cli.ShowHelp(cli.ParseFlags(fs, []string{"--help"}, func() string { return "help text\n" }), &stdout); err != nil || stdout.String() != "help text\n" {
		t.Errorf("--help = %v, %q; want the help on stdout", err, stdout.String())
	}
	err := cli.ParseFlags(fs, []string{"--nope"}, nil)
	var ue cli.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "-nope") || !strings.Contains(err.Error(), "see prog cmd --help") {
		t.Errorf("--nope = %v; want a usage error naming the flag and the help", err)
	}
}

// TestStandardLibraryOnly: cmd/tokenagent links cli, so cli links the
// standard library only.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if deps := strings.Fields(string(out)); len(deps) != 1 || deps[0] != "github.com/tokenagent/tokenagent/cmd/internal/cli" {
		t.Errorf("cli links %v; want the standard library only", deps)
	}
}
