package main

// hardenProcess: nothing to set on Windows.
func hardenProcess() error { return nil }
