//go:build !windows

package main

import (
	"os"
	"syscall"
)

// forwardedSignals are passed from `tokenagent exec` to its command.
var forwardedSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
