package daemon

import (
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/tokenagent/tokenagent/agent/config"
)

// capSysPtrace is CAP_SYS_PTRACE's bit in /proc/self/status's CapEff.
const capSysPtrace = 19

// warnSelectors says, once per start or reload, when profiles have exe
// or sha256 selectors the agent cannot judge for other users' callers:
// the kernel shows another user's executable only to root or a process
// with CAP_SYS_PTRACE. Such callers are refused (never admitted), so the
// warning saves the operator the hunt for why.
func warnSelectors(cfg *config.Config, log zerolog.Logger) {
	var profiles []string
	for _, name := range cfg.ProfileNames() {
		for _, e := range cfg.Profiles[name].Allow {
			if e.Exe != "" || e.SHA256 != "" {
				profiles = append(profiles, name)
				break
			}
		}
	}
	if len(profiles) == 0 || os.Geteuid() == 0 || runtime.GOOS != "linux" || hasEffectiveCap(capSysPtrace) {
		return
	}
	log.Warn().Strs("profiles", profiles).Int("uid", os.Geteuid()).
		Msg("exe and sha256 selectors: this agent has no CAP_SYS_PTRACE, so it can read only its own user's executables, and other users' callers will not match them; " +
			"grant it (systemd: AmbientCapabilities=CAP_SYS_PTRACE and CapabilityBoundingSet=CAP_SYS_PTRACE in a drop-in, see docs/selectors.md) or use unit and cgroup selectors")
}

// hasEffectiveCap reports whether the process has capability bit in its
// effective set.
func hasEffectiveCap(bit uint) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<bit) != 0
		}
	}
	return false
}
