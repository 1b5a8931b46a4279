package main

import "os"

// forwardedSignals are passed from `tokenagent exec` to its command.
var forwardedSignals = []os.Signal{os.Interrupt}
