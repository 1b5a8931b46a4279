//go:build unix && !linux

package main

import "syscall"

// hardenProcess turns core dumps off (macOS has no PR_SET_DUMPABLE; a
// process of another user cannot attach to the agent anyway).
func hardenProcess() error {
	return syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
}
