// Package cli is what the two commands' mains share: the exit codes
// (DESIGN.md, Command line), usage and exit errors, the one place an error
// becomes a message and an exit code (ExitCode), and flag sets whose
// errors are usage errors and whose -h/--help is the command's help. It
// links the standard library only: every start of cmd/tokenagent pays
// for what it links.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit codes, the same in both commands.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2 // a command line that cannot be run
	ExitUnreachable = 3 // the agent is not reachable, not trusted, or not speaking this CLI's protocol
	ExitDenied      = 4 // a forbidden or unknown profile
	ExitIdP         = 5 // the identity provider refused or is unreachable
)

// UsageError is a command line that cannot be run: ExitCode says it and
// exits ExitUsage.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// ExitError ends the program with Code after saying Err (nothing when its
// message is empty: the command already said it).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// HelpRequest is returned for -h/--help: ShowHelp prints Text on stdout.
type HelpRequest struct{ Text string }

func (h *HelpRequest) Error() string { return "help requested" }

// ShowHelp prints a HelpRequest's text on stdout and returns nil for it;
// any other err is returned as it is.
func ShowHelp(err error, stdout io.Writer) error {
	var h *HelpRequest
	if errors.As(err, &h) {
		fmt.Fprint(stdout, h.Text)
		return nil
	}
	return err
}

// ExitCode says err on stderr, prefixed with prog, and returns the code
// to exit with: ExitOK for nil or a help request, ExitUsage for a
// UsageError, an ExitError's Code, else ExitFailure.
func ExitCode(err error, prog string, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, prog+":", msg)
	}
	var ue UsageError
	var ee *ExitError
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &ee):
		return ee.Code
	}
	return ExitFailure
}

// NewFlagSet returns a flag set named name that prints nothing: its
// errors are said once, by ExitCode, and its -h/--help is the command's
// help (ParseFlags).
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// ParseFlags parses args: -h/--help becomes a HelpRequest with help's
// text, any other flag error a UsageError that points at the command's
// help.
func ParseFlags(fs *flag.FlagSet, args []string, help func() string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &HelpRequest{help()}
		}
		return UsageError{fmt.Sprintf("%v (see %s --help)", err, fs.Name())}
	}
	return nil
}
