package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"

	"github.com/kardianos/service"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/packaging"
	"github.com/tokenagent/tokenagent/store"
)

const serviceName = "tokenagent"

// controlOnly satisfies service.Interface for control actions; the
// service itself runs `tokenagentd`.
type controlOnly struct{}

func (controlOnly) Start(service.Service) error { return nil }
func (controlOnly) Stop(service.Service) error  { return nil }

func cmdService(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("service")
	configPath := fs.String("config", "", "configuration `file` the service runs with (default: "+config.DefaultConfigPath()+")")
	userService := fs.Bool("user", false, "a per-user service (systemd --user, launchd agent) instead of a system one")
	action, err := oneArg(fs, args, "usage: tokenagentd service install|uninstall|start|stop|restart|status [--config FILE] [--user]")
	if err != nil {
		return err
	}
	cfgFile := *configPath
	if cfgFile == "" {
		cfgFile = config.DefaultConfigPath()
	}
	cfgFile, _ = filepath.Abs(cfgFile)
	svc, err := newService(cfgFile, *userService)
	if err != nil {
		return err
	}
	switch action {
	case "status":
		st, err := svc.Status()
		switch {
		case errors.Is(err, service.ErrNotInstalled), err != nil && notInstalledSysV():
			fmt.Fprintf(stdout, "%s: not installed (%s)\n", serviceName, service.Platform())
			return nil
		case err != nil:
			return fmt.Errorf("service status: %w", err)
		}
		names := map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped"}
		fmt.Fprintf(stdout, "%s: %s (%s)\n", serviceName, cmp.Or(names[st], "unknown"), service.Platform())
		return nil
	case "install":
		if err := prepareInstall(cfgFile, *userService); err != nil {
			return err
		}
		if err := svc.Install(); err != nil {
			return fmt.Errorf("service install (%s): %w", service.Platform(), err)
		}
		fmt.Fprintf(stdout, "%s: installed (%s), running `tokenagentd --config %s`; start it with: tokenagentd service start\n", serviceName, service.Platform(), cfgFile)
		return nil
	case "uninstall", "start", "stop", "restart":
		if err := service.Control(svc, action); err != nil {
			return fmt.Errorf("service %s (%s): %w", action, service.Platform(), err)
		}
		fmt.Fprintf(stdout, "%s: %s done\n", serviceName, action)
		return nil
	default:
		return cli.UsageError{Msg: fmt.Sprintf("service: unknown action %q (install, uninstall, start, stop, restart, status)", action)}
	}
}

// notInstalledSysV: the SysV backend reports a missing script as a failed
// `service … status`, not as ErrNotInstalled.
func notInstalledSysV() bool {
	if service.Platform() != "unix-systemv" {
		return false
	}
	_, err := os.Stat("/etc/init.d/" + serviceName)
	return errors.Is(err, os.ErrNotExist)
}

// newService describes the service: `tokenagentd --config FILE`, as
// the dedicated user tokenagent where it exists, with the packaged
// hardened unit on systemd.
func newService(cfgFile string, userService bool) (service.Service, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cfg := &service.Config{
		Name:        serviceName,
		DisplayName: "tokenagent",
		Description: "Shares OAuth 2.0 client-credentials tokens with local processes over a Unix socket.",
		Executable:  exe,
		Arguments:   []string{"--config", cfgFile},
		Option:      service.KeyValue{"UserService": userService},
	}
	if !userService && runtime.GOOS == "linux" {
		cfg.Option["SystemdScript"] = packaging.SystemdUnitTemplate()
	}
	if !userService && runtime.GOOS != "linux" {
		if _, err := user.Lookup("_tokenagent"); err == nil {
			cfg.UserName = "_tokenagent"
		}
	}
	return service.New(controlOnly{}, cfg)
}

// prepareInstall checks what the service will need before writing it: the
// configuration, and for a systemd system service the tokenagent user and
// the store key that LoadCredential= hands over.
func prepareInstall(cfgFile string, userService bool) error {
	if _, err := loadConfig(cfgFile); err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	if userService || runtime.GOOS != "linux" {
		return nil
	}
	if _, err := user.Lookup("tokenagent"); err != nil {
		return errors.New("service install: the unit runs as user tokenagent, which does not exist; " +
			"create it with `systemd-sysusers` and packaging/systemd/sysusers.conf, or `useradd --system --user-group tokenagent`")
	}
	if err := store.CreateKeyFile("/etc/tokenagent/store.key"); err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	return nil
}
