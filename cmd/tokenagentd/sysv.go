package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"text/template"
)

// sysvService is what the SysV init script needs to run the agent as its
// user: systemd's User=, RuntimeDirectory=, StateDirectory= and
// LoadCredential= done by hand.
type sysvService struct {
	Name      string   // the service's name: /etc/init.d/NAME
	Command   []string // tokenagentd and its arguments
	User      string   // the user the agent runs as
	Group     string   // that user's primary group
	SocketDir string   // made for the user at each start (/run is emptied at boot)
	StoreDir  string   // made for the user if missing; "" with store = "memory"
	StoreKey  string   // handed over as $CREDENTIALS_DIRECTORY/store-key; "" for none
}

// sysvLog is where the script sends the agent's output.
func sysvLog(name string) string { return "/var/log/" + name + ".log" }

func sysvScriptPath(name string) string { return "/etc/init.d/" + name }

// shellQuote quotes s as one sh word.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

var sysvTemplate = template.Must(template.New("sysv").Funcs(template.FuncMap{"q": shellQuote, "log": sysvLog,
	"cmd": func(args []string) string {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = shellQuote(a)
		}
		return strings.Join(q, " ")
	}}).Parse(`#!/bin/sh
### BEGIN INIT INFO
# Provides:          {{.Name}}
# Required-Start:    $network $remote_fs
# Required-Stop:     $network $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: tokenagent
# Description:       Shares OAuth 2.0 client-credentials tokens with local processes over a Unix socket.
### END INIT INFO
# Written by ` + "`tokenagentd service install`" + `; remove it with ` + "`tokenagentd service uninstall`" + `.
# Runs the agent as user {{.User}}, as the systemd unit does (User=,
# RuntimeDirectory=, LoadCredential=). env: secrets go in /etc/default/{{.Name}}
# as "export NAME=value" lines (mode 0600).
user={{q .User}}
group={{q .Group}}
pid_file={{q (printf "/run/%s.pid" .Name)}}
log_file={{q (log .Name)}}
creds={{q (printf "/run/%s.credentials" .Name)}}
[ -r {{q (printf "/etc/default/%s" .Name)}} ] && . {{q (printf "/etc/default/%s" .Name)}}

exe={{q (index .Command 0)}}

# The pid file's process, if it is still the agent (not a reused pid).
is_running() {
    [ -f "$pid_file" ] || return 1
    case "$(readlink "/proc/$(cat "$pid_file")/exe" 2>/dev/null)" in
    "$exe" | "$exe (deleted)") return 0 ;;
    esac
    return 1
}

case "$1" in
start)
    if is_running; then
        echo "Already started"
        exit 0
    fi
    umask 077
    [ -d {{q .SocketDir}} ] || install -d -m 0750 -o "$user" -g "$group" {{q .SocketDir}} || exit 1
{{- if .StoreDir}}
    [ -d {{q .StoreDir}} ] || install -d -m 0700 -o "$user" -g "$group" {{q .StoreDir}} || exit 1
{{- end}}
{{- if .StoreKey}}
    if [ -f {{q .StoreKey}} ]; then
        rm -rf "$creds"
        install -d -m 0500 -o "$user" -g "$group" "$creds" &&
            install -m 0400 -o "$user" -g "$group" {{q .StoreKey}} "$creds/store-key" || exit 1
        export CREDENTIALS_DIRECTORY="$creds"
    fi
{{- end}}
    touch "$log_file" && chmod 0640 "$log_file" || exit 1
    echo "Starting {{.Name}} as user $user"
    setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs -- \
        {{cmd .Command}} >>"$log_file" 2>&1 </dev/null &
    echo $! > "$pid_file"
    ;;
stop)
    if ! is_running; then
        echo "Not running"
        rm -rf "$creds"
        exit 0
    fi
    echo "Stopping {{.Name}}"
    kill -TERM "$(cat "$pid_file")"
    i=0
    while is_running && [ $i -lt 450 ]; do  # the agent drains requests for up to 30s
        sleep 0.1
        i=$((i + 1))
    done
    if is_running; then
        echo "Not stopped after 45s; see $log_file"
        exit 1
    fi
    rm -f "$pid_file"
    rm -rf "$creds"
    echo "Stopped"
    ;;
restart)
    "$0" stop && "$0" start
    ;;
reload)
    is_running && kill -HUP "$(cat "$pid_file")"
    ;;
status)
    if is_running; then
        echo "Running"
    else
        echo "Stopped"
        exit 3
    fi
    ;;
*)
    echo "Usage: $0 {start|stop|restart|reload|status}"
    exit 2
    ;;
esac
exit 0
`))

// script renders the init script.
func (s sysvService) script() (string, error) {
	var b bytes.Buffer
	if err := sysvTemplate.Execute(&b, s); err != nil {
		return "", err
	}
	if strings.Contains(b.String(), "{{") {
		// kardianos/service parses the script as a template of its own.
		return "", errors.New("service install: a path holds \"{{\"; choose another")
	}
	return b.String(), nil
}

// sysvRunning asks the script whether the agent runs; its exit status
// only says "not running" (3), which is no error here.
func sysvRunning(name string) (installed, running bool, err error) {
	if _, err := os.Stat(sysvScriptPath(name)); errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	out, err := exec.Command(sysvScriptPath(name), "status").Output()
	switch {
	case strings.HasPrefix(string(out), "Running"):
		return true, true, nil
	case strings.HasPrefix(string(out), "Stopped"):
		return true, false, nil
	}
	return true, false, fmt.Errorf("%s status: %v: %s", sysvScriptPath(name), err, out)
}

// sysvUninstall removes what service install wrote: the script and its
// runlevel links (kardianos/service leaves the links).
func sysvUninstall(name string) {
	script := sysvScriptPath(name)
	links, _ := filepath.Glob("/etc/rc?.d/[SK][0-9][0-9]" + name)
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && target == script {
			os.Remove(l)
		}
	}
	os.Remove("/run/" + name + ".pid")
	os.RemoveAll("/run/" + name + ".credentials")
}

// primaryGroup names u's primary group.
func primaryGroup(u *user.User) string {
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		return g.Name
	}
	return u.Gid
}
