package main

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// hardenProcess keeps the agent's memory — secrets, keys, tokens — out of
// reach of other processes of the same user and off the disk: it is made
// non-dumpable (no ptrace, /proc/PID/mem and environ owned by root) and
// core dumps are turned off.
func hardenProcess() error {
	return errors.Join(
		unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0),
		syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}),
	)
}
