package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kardianos/service"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/daemon"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/packaging"
	"github.com/tokenagent/tokenagent/store"
)

const serviceName = "tokenagent"

// startWait bounds how long `service start` waits for the agent's socket
// to answer /v1/health before it reports the start as failed.
const startWait = 60 * time.Second

// controlOnly satisfies service.Interface for control actions; the
// service itself runs `tokenagentd`.
type controlOnly struct{}

func (controlOnly) Start(service.Service) error { return nil }
func (controlOnly) Stop(service.Service) error  { return nil }

// serviceCtl is one service as `tokenagentd service` manages it.
type serviceCtl struct {
	svc         service.Service
	name        string
	cfgFile     string
	userService bool
	sysv        bool       // a SysV init script of ours (Linux without systemd)
	runAs       *user.User // the user a system service runs as; nil: the platform's choice
	runAsErr    error      // why there is no such user (install reports it)
}

func cmdService(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("service")
	configPath := fs.String("config", "", "configuration `file` the service runs with (default: "+config.DefaultConfigPath()+")")
	userService := fs.Bool("user", false, "a per-user service (systemd --user, launchd agent) instead of a system one")
	asUser := fs.String("as", "", "the `user` a system service runs as without systemd (default: "+packageUserFor(runtime.GOOS)+")")
	name := fs.String("name", serviceName, "the service's `name`, for a second agent beside the first")
	action, err := oneArg(fs, args, "usage: tokenagentd service install|uninstall|start|stop|restart|status [--config FILE] [--user] [--as USER] [--name NAME]")
	if err != nil {
		return err
	}
	cfgFile := *configPath
	if cfgFile == "" {
		cfgFile = config.DefaultConfigPath()
	}
	cfgFile, _ = filepath.Abs(cfgFile)
	c, err := newServiceCtl(*name, cfgFile, *userService, *asUser)
	if err != nil {
		return err
	}
	switch action {
	case "status":
		return c.status(stdout)
	case "install":
		return c.install(stdout)
	case "start":
		return c.start(ctx, stdout)
	case "restart":
		if err := c.control("stop"); err != nil {
			return err
		}
		return c.start(ctx, stdout)
	case "uninstall", "stop":
		if err := c.control(action); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s done\n", c.name, action)
		return nil
	default:
		return cli.UsageError{Msg: fmt.Sprintf("service: unknown action %q (install, uninstall, start, stop, restart, status)", action)}
	}
}

// newServiceCtl describes the service: `tokenagentd --config FILE`, with
// the packaged hardened unit on systemd, a SysV script of ours that runs
// the agent as the package's user on Linux without systemd, and as the
// user _tokenagent on macOS where it exists.
func newServiceCtl(name, cfgFile string, userService bool, asUser string) (*serviceCtl, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &serviceCtl{name: name, cfgFile: cfgFile, userService: userService}
	cfg := &service.Config{
		Name:        name,
		DisplayName: name,
		Description: "Shares OAuth 2.0 client-credentials tokens with local processes over a Unix socket.",
		Executable:  exe,
		Arguments:   []string{"--config", cfgFile},
		Option:      service.KeyValue{"UserService": userService},
	}
	if userService {
		if asUser != "" {
			return nil, cli.UsageError{Msg: "service: --as is for a system service; a --user service runs as you"}
		}
	} else {
		switch platform := service.Platform(); {
		case runtime.GOOS == "linux" && platform == "linux-systemd":
			if asUser != "" && asUser != packageUser {
				return nil, cli.UsageError{Msg: fmt.Sprintf("service: under systemd the unit runs as user tokenagent; to run it as %s, `systemctl edit %s` and set User= and Group= after install", asUser, name)}
			}
			cfg.Option["SystemdScript"] = packaging.SystemdUnitTemplate()
		case runtime.GOOS == "linux" && platform == "unix-systemv":
			c.sysv = true
			if asUser == "" {
				asUser = packageUserFor(runtime.GOOS)
			}
			if c.runAs, err = user.Lookup(asUser); err != nil {
				c.runAsErr = fmt.Errorf("service install: the service runs as user %s, which does not exist: install the .deb, "+
					"or create it with `useradd --system --user-group --home-dir /var/lib/tokenagent --shell /usr/sbin/nologin %s`, or pass --as USER", asUser, asUser)
			}
		case runtime.GOOS == "linux":
			if asUser == "" {
				asUser = packageUserFor(runtime.GOOS)
			}
			return nil, fmt.Errorf("service: this host's init system (%s) would run the agent as root, which refuses the package's directories: "+
				"`tokenagentd service` runs it as user %s under systemd or SysV init only. "+
				"Start it from your init system as that user, e.g. `setpriv --reuid=%s --regid=%s --init-groups -- %s --config %s`", platform, asUser, asUser, asUser, exe, cfgFile)
		default:
			if asUser == "" {
				if _, err := user.Lookup(packageUserFor(runtime.GOOS)); err == nil {
					asUser = packageUserFor(runtime.GOOS)
				}
			}
			cfg.UserName = asUser
			// launchd: stdout and stderr to /var/log/NAME.{out,err}.log,
			// which newsyslog rotates (packaging/launchd/tokenagent.newsyslog.conf).
			cfg.Option["LogOutput"] = true
		}
	}
	c.svc, err = service.New(controlOnly{}, cfg)
	if err != nil {
		return nil, err
	}
	if c.sysv && c.runAs != nil {
		// Resolved now, for the script: the agent's socket and store as
		// its user will see them. Install refuses a configuration it
		// cannot read; the other actions need it only to wait on the
		// socket.
		if cfgData, err := loadConfig(cfgFile); err == nil {
			if err := c.sysvScript(cfgData, cfg); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// systemSocket is where a system service's agent listens: the
// configuration's socket, else the system default (the agent, run as its
// own user, would otherwise look for a per-user one).
func systemSocket(cfg *config.Config) string {
	if cfg.Socket != "" {
		return cfg.Socket
	}
	return ipc.SystemSocket()
}

// sysvScript sets the script the SysV backend installs.
func (c *serviceCtl) sysvScript(cfg *config.Config, scfg *service.Config) error {
	s := sysvService{Name: c.name, User: c.runAs.Username, Group: primaryGroup(c.runAs),
		Command: append([]string{scfg.Executable}, scfg.Arguments...), SocketDir: filepath.Dir(systemSocket(cfg))}
	if cfg.Socket == "" {
		s.Command = append(s.Command, "--socket", systemSocket(cfg))
	}
	if p := cfg.StorePath(); p != "" {
		s.StoreDir = filepath.Dir(p)
		if cfg.StoreKey == "" {
			s.StoreKey = filepath.Join(filepath.Dir(c.cfgFile), "store.key")
		}
	}
	text, err := s.script()
	if err != nil {
		return err
	}
	scfg.Option["SysvScript"] = text
	return nil
}

func (c *serviceCtl) platform() string { return service.Platform() }

// control runs start, stop or uninstall through the platform.
func (c *serviceCtl) control(action string) error {
	if c.sysv {
		installed, running, err := sysvRunning(c.name)
		switch {
		case err != nil:
			return err
		case !installed:
			return fmt.Errorf("service %s: %s is not installed (no %s); install it with `tokenagentd service install`", action, c.name, sysvScriptPath(c.name))
		case action == "uninstall" && running:
			return fmt.Errorf("service uninstall: %s is running; stop it first: tokenagentd service stop", c.name)
		}
	}
	if err := service.Control(c.svc, action); err != nil {
		return fmt.Errorf("service %s (%s): %w", action, c.platform(), err)
	}
	if action == "uninstall" && c.sysv {
		sysvUninstall(c.name)
	}
	return nil
}

// install checks what the service will need before writing it: the
// configuration, and for a system service the user it runs as, the
// directories and secret files as that user would find them, and the
// store key.
func (c *serviceCtl) install(stdout io.Writer) error {
	cfg, err := loadConfig(c.cfgFile)
	if err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	switch {
	case c.userService || runtime.GOOS != "linux":
	case c.sysv:
		if err := c.prepareSysV(cfg); err != nil {
			return err
		}
	default: // systemd
		if _, err := user.Lookup("tokenagent"); err != nil {
			return errors.New("service install: the unit runs as user tokenagent, which does not exist; " +
				"create it with `systemd-sysusers` and packaging/systemd/sysusers.conf, or `useradd --system --user-group tokenagent`")
		}
		if err := store.CreateKeyFile("/etc/tokenagent/store.key"); err != nil {
			return fmt.Errorf("service install: %w", err)
		}
	}
	if err := c.svc.Install(); err != nil {
		return fmt.Errorf("service install (%s): %w", c.platform(), err)
	}
	as := ""
	if c.runAs != nil {
		as = " as user " + c.runAs.Username
	}
	fmt.Fprintf(stdout, "%s: installed (%s), running `tokenagentd --config %s`%s; start it with: tokenagentd service start\n", c.name, c.platform(), c.cfgFile, as)
	return nil
}

// prepareSysV refuses what the agent, started by the script as its
// user, would refuse, as check-config does; and makes the store key the
// script hands over.
func (c *serviceCtl) prepareSysV(cfg *config.Config) error {
	if c.runAsErr != nil {
		return c.runAsErr
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		return errors.New("service install: the init script starts the agent as its user with setpriv, which is not installed; install util-linux")
	}
	if cfg.Store == "" {
		return fmt.Errorf("service install: %s sets no store; the agent, run as user %s, would keep its tokens under that user's home directory: "+
			"set store = \"/var/lib/tokenagent/tokens.db\" (or \"memory\")", c.cfgFile, c.runAs.Username)
	}
	uid, err := strconv.Atoi(c.runAs.Uid)
	if err != nil {
		return fmt.Errorf("service install: user %s: uid %q", c.runAs.Username, c.runAs.Uid)
	}
	as := checkedUser{uid: uid, user: c.runAs, name: c.runAs.Username}
	if err := daemon.CheckDirs(cfg, c.cfgFile, systemSocket(cfg), uid); err != nil {
		return fmt.Errorf("service install: %w", as.explain(err))
	}
	if err := secretref.CheckReadableAs(cfg, c.runAs); err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	if cfg.StorePath() != "" && cfg.StoreKey == "" {
		if err := store.CreateKeyFile(filepath.Join(filepath.Dir(c.cfgFile), "store.key")); err != nil {
			return fmt.Errorf("service install: %w", err)
		}
	}
	return nil
}

// start starts the service and waits until its socket answers
// /v1/health, or until it has stopped: a start is reported only once the
// agent serves. A failed start shows what the agent logged.
func (c *serviceCtl) start(ctx context.Context, stdout io.Writer) error {
	cfg, err := loadConfig(c.cfgFile)
	if err != nil {
		return fmt.Errorf("service start: %w", err)
	}
	mark := c.logMark()
	if err := c.control("start"); err != nil {
		return err
	}
	socket := systemSocket(cfg)
	if c.userService {
		socket = ipc.SocketPath("", cfg.Socket)
	}
	client := &clientlib.Client{Socket: socket}
	if c.runAs != nil {
		if uid, err := strconv.Atoi(c.runAs.Uid); err == nil {
			client.AgentUIDs = []int{uid} // the agent we started, as its user
		}
	}
	ctx, cancel := context.WithTimeout(ctx, startWait)
	defer cancel()
	for {
		hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := client.Health(hctx)
		hcancel()
		if err == nil {
			fmt.Fprintf(stdout, "%s: started, serving on %s\n", c.name, socket)
			return nil
		}
		if running, known := c.running(); known && !running {
			if c.sysv {
				service.Control(c.svc, "stop") // the script's stop removes the store key it handed over
			}
			return fmt.Errorf("service start: %s exited before serving on %s%s", c.name, socket, c.why(mark))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("service start: %s runs but its socket %s did not answer within %v (%v)%s", c.name, socket, startWait, err, c.why(mark))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// running reports whether the service runs, and whether that is known.
func (c *serviceCtl) running() (running, known bool) {
	if c.sysv {
		installed, running, err := sysvRunning(c.name)
		return running, err == nil && installed
	}
	st, err := c.svc.Status()
	if err != nil || st == service.StatusUnknown {
		return false, false
	}
	return st == service.StatusRunning, true
}

// status says whether the service is installed and runs, and if it is
// stopped, why: the last lines the agent logged.
func (c *serviceCtl) status(stdout io.Writer) error {
	var installed, running bool
	if c.sysv {
		var err error
		if installed, running, err = sysvRunning(c.name); err != nil {
			return fmt.Errorf("service status: %w", err)
		}
	} else {
		st, err := c.svc.Status()
		switch {
		case errors.Is(err, service.ErrNotInstalled):
		case err != nil:
			return fmt.Errorf("service status: %w", err)
		default:
			installed, running = true, st == service.StatusRunning
			if st == service.StatusUnknown {
				fmt.Fprintf(stdout, "%s: unknown (%s)\n", c.name, c.platform())
				return nil
			}
		}
	}
	switch {
	case !installed:
		fmt.Fprintf(stdout, "%s: not installed (%s)\n", c.name, c.platform())
	case running:
		fmt.Fprintf(stdout, "%s: running (%s)\n", c.name, c.platform())
	default:
		fmt.Fprintf(stdout, "%s: stopped (%s)%s\n", c.name, c.platform(), c.why(-1))
	}
	return nil
}

// logFile is where the service's output goes, when it is a file.
func (c *serviceCtl) logFile() string {
	switch {
	case c.sysv:
		return sysvLog(c.name)
	case runtime.GOOS == "darwin" && !c.userService:
		return "/var/log/" + c.name + ".err.log"
	}
	return ""
}

// logMark is the size of the log file now, so that a failed start shows
// only what this start logged; -1 without a file.
func (c *serviceCtl) logMark() int64 {
	if fi, err := os.Stat(c.logFile()); err == nil {
		return fi.Size()
	}
	return -1
}

// why returns the agent's last log lines (since mark, if not -1), as the
// reason it does not run, or where to look for it.
func (c *serviceCtl) why(mark int64) string {
	const lines = 10
	if f := c.logFile(); f != "" {
		tail := tailFile(f, mark, lines)
		if tail == "" {
			return fmt.Sprintf("; nothing in %s", f)
		}
		return fmt.Sprintf("; the last lines of %s:\n%s", f, tail)
	}
	if service.Platform() == "linux-systemd" {
		flag := ""
		if c.userService {
			flag = "--user "
		}
		out, err := exec.Command("journalctl", strings.Fields(flag+"-u "+c.name+" -n "+strconv.Itoa(lines)+" --no-pager -o cat")...).Output()
		if err == nil && len(out) > 0 {
			return fmt.Sprintf("; its last log lines (journalctl %s-u %s):\n%s", flag, c.name, strings.TrimRight(string(out), "\n"))
		}
		return fmt.Sprintf("; see `journalctl %s-u %s`", flag, c.name)
	}
	return ""
}

// tailFile returns the last n lines of path written after offset from
// (all of it when from is -1).
func tailFile(path string, from int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if from > 0 {
		if _, err := f.Seek(from, io.SeekStart); err != nil {
			return ""
		}
	}
	var last []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		last = append(last, "  "+sc.Text())
		if len(last) > n {
			last = last[1:]
		}
	}
	return strings.Join(last, "\n")
}
