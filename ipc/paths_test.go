package ipc

import "testing"

func TestSocketPaths(t *testing.T) {
	type env map[string]string
	tests := []struct {
		name       string
		goos       string // "" is linux
		euid       int
		env        env
		existing   []string
		flag, conf string
		daemon     string // SocketPath(flag, conf)
		client     string // ClientSocketPath(flag)
	}{
		{name: "root: the system socket", euid: 0, daemon: SystemSocketPath, client: SystemSocketPath},
		{name: "root ignores XDG_RUNTIME_DIR", euid: 0, env: env{"XDG_RUNTIME_DIR": "/run/user/0"}, daemon: SystemSocketPath, client: SystemSocketPath},
		{name: "flag first", euid: 1000, env: env{EnvSocket: "/env.sock"}, flag: "/flag.sock", conf: "/conf.sock", daemon: "/flag.sock", client: "/flag.sock"},
		{name: "then the environment", euid: 1000, env: env{EnvSocket: "/env.sock"}, conf: "/conf.sock", daemon: "/env.sock", client: "/env.sock"},
		{name: "then the configuration (daemon only)", euid: 1000, env: env{"XDG_RUNTIME_DIR": "/run/user/1000"}, conf: "/conf.sock",
			daemon: "/conf.sock", client: SystemSocketPath},
		{name: "user with an agent of their own", euid: 1000, env: env{"XDG_RUNTIME_DIR": "/run/user/1000"},
			existing: []string{"/run/user/1000/tokenagent/agent.sock"},
			daemon:   "/run/user/1000/tokenagent/agent.sock", client: "/run/user/1000/tokenagent/agent.sock"},
		{name: "user without one falls back to the system agent", euid: 1000, env: env{"XDG_RUNTIME_DIR": "/run/user/1000"},
			daemon: "/run/user/1000/tokenagent/agent.sock", client: SystemSocketPath},
		{name: "relative XDG_RUNTIME_DIR is ignored", euid: 1000, env: env{"XDG_RUNTIME_DIR": "run"},
			daemon: "", client: SystemSocketPath},
		// No /tmp fallback: another user could have created the directory
		// first, served a fake agent in it or swapped the real socket.
		// macOS has no /run: root's agent is in /var/run.
		{name: "darwin root: /var/run", goos: "darwin", euid: 0, daemon: DarwinSystemSocketPath, client: DarwinSystemSocketPath},
		{name: "darwin user without an agent reaches root's in /var/run", goos: "darwin", euid: 501,
			daemon: "", client: DarwinSystemSocketPath},
		{name: "darwin: an explicit socket still wins", goos: "darwin", euid: 0, flag: "/flag.sock", daemon: "/flag.sock", client: "/flag.sock"},
		{name: "linux root: /run", goos: "linux", euid: 0, daemon: SystemSocketPath, client: SystemSocketPath},
		{name: "freebsd root: /run", goos: "freebsd", euid: 0, daemon: SystemSocketPath, client: SystemSocketPath},
		{name: "no XDG_RUNTIME_DIR: no default for a user agent", euid: 1000, existing: []string{"/tmp/tokenagent-1000/agent.sock"},
			daemon: "", client: SystemSocketPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := paths{goos: tt.goos, euid: tt.euid, getenv: func(k string) string { return tt.env[k] }, exists: func(s string) bool {
				for _, e := range tt.existing {
					if e == s {
						return true
					}
				}
				return false
			}}
			if got := p.socket(tt.flag, tt.conf); got != tt.daemon {
				t.Errorf("SocketPath(%q, %q) = %q, want %q", tt.flag, tt.conf, got, tt.daemon)
			}
			if got := p.clientSocket(tt.flag); got != tt.client {
				t.Errorf("ClientSocketPath(%q) = %q, want %q", tt.flag, got, tt.client)
			}
		})
	}
}

// TestSocketHint: no hint for the system's own default socket, whichever
// system; a hint for any other.
func TestSocketHint(t *testing.T) {
	for _, tt := range []struct {
		goos, socket, want string
	}{
		{"linux", SystemSocketPath, ""},
		{"darwin", DarwinSystemSocketPath, ""},
		{"darwin", SystemSocketPath, "export TOKENAGENT_SOCKET=" + SystemSocketPath},
		{"linux", "/srv/agent.sock", "export TOKENAGENT_SOCKET=/srv/agent.sock"},
	} {
		p := paths{goos: tt.goos, euid: 0, getenv: func(string) string { return "" }, exists: func(string) bool { return false }}
		if got := p.socketHint(tt.socket); got != tt.want {
			t.Errorf("%s: SocketHint(%q) = %q, want %q", tt.goos, tt.socket, got, tt.want)
		}
	}
}
