package config

import (
	"os"
	"path/filepath"
	"runtime"
)

// System mode is when the agent runs as root; user mode otherwise, with XDG
// paths. These are the defaults when the configuration names no path.

// ConfigDir is /etc/tokenagent (root) or $XDG_CONFIG_HOME/tokenagent. On
// macOS too: /etc (/private/etc) is root's there, where Homebrew's
// /usr/local/etc (Intel) belongs to the user who installed Homebrew, which
// the directory trust check refuses for an agent run as root.
func ConfigDir() string {
	if os.Geteuid() == 0 {
		return "/etc/tokenagent"
	}
	return filepath.Join(xdgDir("XDG_CONFIG_HOME", ".config"), "tokenagent")
}

// DefaultConfigPath is agent.toml in ConfigDir.
func DefaultConfigPath() string { return filepath.Join(ConfigDir(), "agent.toml") }

// DefaultStorePath is /var/lib/tokenagent/tokens.db (root; on macOS,
// which has no /var/lib, /var/db/tokenagent/tokens.db) or
// $XDG_STATE_HOME/tokenagent/tokens.db.
func DefaultStorePath() string {
	if os.Geteuid() == 0 {
		return systemStorePath(runtime.GOOS)
	}
	return filepath.Join(xdgDir("XDG_STATE_HOME", filepath.Join(".local", "state")), "tokenagent", "tokens.db")
}

// systemStorePath is root's store on goos.
func systemStorePath(goos string) string {
	if goos == "darwin" {
		return "/var/db/tokenagent/tokens.db"
	}
	return "/var/lib/tokenagent/tokens.db"
}

// xdgDir is $env, or fallback under the home directory.
func xdgDir(env, fallback string) string {
	if dir := os.Getenv(env); filepath.IsAbs(dir) {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/"
	}
	return filepath.Join(home, fallback)
}
