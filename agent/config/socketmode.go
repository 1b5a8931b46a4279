package config

import (
	"fmt"
	"io/fs"
	"strconv"
)

// SocketFileMode is socket_mode as permission bits; 0 when unset (the
// daemon then picks the default for its mode).
func (c *Config) SocketFileMode() (fs.FileMode, error) {
	if c.SocketMode == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode such as \"0660\"", c.SocketMode)
	}
	if v&0o600 != 0o600 {
		return 0, fmt.Errorf("%q: the owner needs read and write (0600 at least)", c.SocketMode)
	}
	return fs.FileMode(v), nil
}
