package fleettest

import "syscall"

// procAttr kills an etcd member process with the test binary.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
