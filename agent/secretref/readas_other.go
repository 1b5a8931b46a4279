//go:build !unix

package secretref

import "os/user"

// readableAs has no owners and modes to judge on this platform.
func readableAs(string, *user.User, []string) error { return nil }
