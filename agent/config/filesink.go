package config

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
)

// FileSink is one [[profiles.NAME.files]] table: a file the agent keeps
// the profile's current token in, so that a script reads it with no
// process at all: curl -H "Authorization: Bearer $(< /run/tokenagent/tokens/zeebe)".
type FileSink struct {
	// Path is the file, absolute. Its directory must be a real directory
	// (not a link) owned by the agent's user or root and not writable by
	// group or others, sticky or not, as must those above it (sticky ones
	// excepted); a missing one is made by the agent at start (0750). See
	// package agent/sink.
	Path string `toml:"path"`
	// Format is plain (default), json, header or env (an export line).
	Format string `toml:"format"`
	// Mode is the file's permission bits in octal; default "0600".
	Mode string `toml:"mode"`
	// Owner and Group, when set, are the file's user and group (names;
	// changing the owner needs root).
	Owner string `toml:"owner"`
	Group string `toml:"group"`
}

func (f FileSink) validate() error {
	switch {
	case !filepath.IsAbs(f.Path):
		return fmt.Errorf("path %q: use an absolute path", f.Path)
	case f.Format != "" && f.Format != "plain" && f.Format != "json" && f.Format != "header" && f.Format != "env":
		return fmt.Errorf("format %q: use plain, json, header or env", f.Format)
	}
	if _, err := f.FileMode(); err != nil {
		return err
	}
	return nil
}

// FileMode is the sink's mode as permission bits; 0600 when unset.
func (f FileSink) FileMode() (fs.FileMode, error) {
	if f.Mode == "" {
		return 0o600, nil
	}
	v, err := strconv.ParseUint(f.Mode, 8, 32)
	switch {
	case err != nil || v > 0o777:
		return 0, fmt.Errorf("mode %q is not an octal mode such as \"0640\"", f.Mode)
	case v&0o022 != 0:
		return 0, fmt.Errorf("mode %q lets group or others write the token file; use at most 0644", f.Mode)
	}
	return fs.FileMode(v), nil
}

// SinkDirs lists the directories of every file sink, for the daemon's
// ownership checks.
func (c *Config) SinkDirs() []string {
	var dirs []string
	for _, name := range c.ProfileNames() {
		for _, f := range c.Profiles[name].Files {
			if d := filepath.Dir(filepath.Clean(f.Path)); !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}
