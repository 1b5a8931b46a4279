package packaging_test

import (
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

// TestContainerImage builds the image with packaging/container/build.sh,
// exports its file system and runs it under systemd-nspawn (podman run
// cannot start containers on CI machines) the way the shipped manifests
// run it: the DaemonSet's agent as root with its ConfigMap, Secrets and
// hostPath socket, a workload's `tokenagent token` as uid 1000, and the
// sidecar's agent as the image's user, whose token endpoint an OAuth
// client of uid 1000 in the same network namespace uses unmodified. The
// probes are the manifests' own commands. Run by packaging/test-image.sh
// (root, podman, systemd-container); skipped otherwise.
func TestContainerImage(t *testing.T) {
	if os.Getenv("TOKENAGENT_IMAGE_TEST") == "" {
		t.Skip("set TOKENAGENT_IMAGE_TEST=1 (root, podman, systemd-nspawn): see packaging/test-image.sh")
	}
	if os.Geteuid() != 0 {
		t.Fatal("TOKENAGENT_IMAGE_TEST needs root: podman build, tar --numeric-owner and systemd-nspawn")
	}
	for _, tool := range []string{"podman", "systemd-nspawn", "tar", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("TOKENAGENT_IMAGE_TEST: %s is not installed (packaging/test-image.sh installs it)", tool)
		}
	}
	image := builtImage(t)
	version := image[strings.LastIndex(image, ":")+1:]
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	rootfs := filepath.Join(dir, "rootfs")

	step(t, "build "+image+" with container/build.sh", func() error {
		return run("container/build.sh")
	})
	var env []string
	step(t, "export the image's file system", func() error {
		id, err := output("podman", "create", image)
		if err != nil {
			return err
		}
		defer run("podman", "rm", id)
		tarball := filepath.Join(dir, "image.tar")
		if err := run("podman", "export", "-o", tarball, id); err != nil {
			return err
		}
		os.Mkdir(rootfs, 0o755)
		if err := run("tar", "--numeric-owner", "-xf", tarball, "-C", rootfs); err != nil {
			return err
		}
		os.Remove(tarball)
		config, err := output("podman", "image", "inspect", "--format", "{{json .Config}}", image)
		if err != nil {
			return err
		}
		var c struct {
			User       string
			Env        []string
			Entrypoint []string
		}
		if err := json.Unmarshal([]byte(config), &c); err != nil {
			return err
		}
		env = c.Env
		if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/bin/tokenagentd"}) {
			return fmt.Errorf("image user %q, entrypoint %q; want 65532:65532 and /usr/bin/tokenagentd", c.User, c.Entrypoint)
		}
		return nil
	})
	step(t, "the image holds static binaries, the CA bundle, no shell", func() error {
		for _, bin := range []string{"usr/bin/tokenagentd", "usr/bin/tokenagent"} {
			f, err := elf.Open(filepath.Join(rootfs, bin))
			if err != nil {
				return err
			}
			dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
			f.Close()
			if dynamic {
				return fmt.Errorf("%s is dynamically linked", bin)
			}
		}
		if fi, err := os.Stat(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt")); err != nil || fi.Size() < 1000 {
			return fmt.Errorf("no CA bundle: %v", err)
		}
		for _, shell := range []string{"bin/sh", "usr/bin/sh", "bin/busybox"} {
			if _, err := os.Lstat(filepath.Join(rootfs, shell)); err == nil {
				return fmt.Errorf("the image has %s", shell)
			}
		}
		return nil
	})

	box := &nspawn{t: t, rootfs: rootfs, env: env, helper: buildRunas(t, dir)}
	step(t, "tokenagentd version in the image, as its user", func() error {
		out, err := box.output(65532, "/usr/bin/tokenagentd", "version")
		if err == nil && !strings.Contains(out, version) {
			err = fmt.Errorf("version says %q, want %s", out, version)
		}
		return err
	})

	idp := idptest.New()
	defer idp.Close()
	objects := manifestObjects(t)
	find := func(kind, name string) manifestObject {
		for _, o := range objects {
			if o.kind == kind && o.name == name {
				return o
			}
		}
		t.Fatalf("no %s %s in kubernetes/", kind, name)
		return manifestObject{}
	}
	configMap := func(name string) string {
		var cm corev1.ConfigMap
		strict(t, find("ConfigMap", name).doc, &cm)
		return strings.Replace(cm.Data["agent.toml"], "https://login.example.com/oauth/token", idp.TokenURL, 1)
	}

	t.Run("DaemonSet", func(t *testing.T) {
		spec, _ := podSpec(t, find("DaemonSet", "tokenagent"))
		c := spec.Containers[0]
		socketDir, state := filepath.Join(dir, "ds-socket"), filepath.Join(dir, "ds-state")
		os.Mkdir(socketDir, 0o755) // hostPath DirectoryOrCreate: root's, 0755
		os.Mkdir(state, 0o755)
		key := make([]byte, 32)
		rand.Read(key)
		mounts := map[string]string{ // mountPath → host directory
			"/etc/tokenagent":     kubeVolume(t, filepath.Join(dir, "ds-config"), map[string]string{"agent.toml": configMap("tokenagent-config")}, 0, 0o644),
			"/etc/tokenagent-key": kubeVolume(t, filepath.Join(dir, "ds-key"), map[string]string{"store-key": base64.StdEncoding.EncodeToString(key)}, 0, 0o400),
			"/run/tokenagent":     socketDir,
			"/var/lib/tokenagent": state,
		}
		for _, m := range c.VolumeMounts {
			if mounts[m.MountPath] == "" {
				t.Fatalf("the DaemonSet mounts %s, which this test does not provide", m.MountPath)
			}
		}
		box := box.with(mounts)
		argv := append(slices.Clone(c.Command), c.Args...)
		// The IdP does not know the client yet: the profile cannot serve.
		stop := box.start(t, *c.SecurityContext.RunAsUser, argv, "ZEEBE_CLIENT_SECRET=ds-secret")
		defer stop()
		box.waitProbe(t, c.LivenessProbe)
		step(t, "a workload (uid 1000) asks while the IdP refuses the client: exit 5", func() error {
			_, err := box.output(1000, "tokenagent", "token", "zeebe")
			return wantExit(err, 5)
		})
		step(t, "liveness (the manifest's command) passes while the profile cannot serve", func() error {
			return box.probe(c.LivenessProbe)
		})
		step(t, "readiness (the manifest's command) fails while the profile cannot serve", func() error {
			return wantExit(box.probe(c.ReadinessProbe), 5)
		})
		step(t, "SIGTERM: the agent drains and exits 0", stop)
		// The secret is fixed (here: the IdP learns the client) and the
		// pod restarts, as after a change to the Secret.
		idp.AddClient(idptest.Client{ID: "zeebe-worker", Secret: "ds-secret", Method: "client_secret_basic"})
		stop = box.start(t, *c.SecurityContext.RunAsUser, argv, "ZEEBE_CLIENT_SECRET=ds-secret")
		defer stop()
		box.waitProbe(t, c.LivenessProbe)
		step(t, "tokenagent token zeebe as uid 1000 gets the IdP's token", func() error {
			out, err := box.output(1000, "tokenagent", "token", "zeebe")
			if err == nil && !slices.Contains(idp.Issued(), strings.TrimSpace(out)) {
				err = fmt.Errorf("token %.12s… is not one the IdP issued", out)
			}
			return err
		})
		step(t, "readiness passes once the profile serves", func() error { return box.probe(c.ReadinessProbe) })
		step(t, "the socket on the host is 0666 and root's", func() error {
			fi, err := os.Stat(filepath.Join(socketDir, "agent.sock"))
			if err == nil && (fi.Mode().Perm() != 0o666 || fi.Sys().(*syscall.Stat_t).Uid != 0) {
				err = fmt.Errorf("socket mode %v uid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
			}
			return err
		})
		step(t, "SIGTERM: the agent drains and exits 0", stop)
	})

	t.Run("sidecar", func(t *testing.T) {
		spec, _ := podSpec(t, find("Pod", "token-consumer-sidecar"))
		agent, worker := spec.InitContainers[0], spec.Containers[0]
		port := freePort(t)
		config := strings.Replace(configMap("token-consumer-tokenagent"), "127.0.0.1:8731", "127.0.0.1:"+port, 1)
		run := filepath.Join(dir, "sc-run") // the agent container's own writable /run/tokenagent
		os.Mkdir(run, 0o755)
		os.Chown(run, 65532, 65532)
		gid := int(*spec.SecurityContext.FSGroup)
		mounts := map[string]string{
			"/etc/tokenagent":         kubeVolume(t, filepath.Join(dir, "sc-config"), map[string]string{"agent.toml": config}, gid, 0o644),
			"/etc/tokenagent-secrets": kubeVolume(t, filepath.Join(dir, "sc-secrets"), map[string]string{"zeebe-client-secret": "sc-secret"}, gid, os.FileMode(*spec.Volumes[1].Secret.DefaultMode)),
			"/run/tokenagent":         run,
		}
		for _, m := range agent.VolumeMounts {
			if mounts[m.MountPath] == "" {
				t.Fatalf("the sidecar mounts %s, which this test does not provide", m.MountPath)
			}
		}
		idp.AddClient(idptest.Client{ID: "zeebe-worker", Secret: "sc-secret", Method: "client_secret_basic"})
		box := box.with(mounts)
		stop := box.start(t, *agent.SecurityContext.RunAsUser, append([]string{"/usr/bin/tokenagentd"}, agent.Args...))
		defer stop()
		box.waitProbe(t, agent.StartupProbe)
		var printed map[string]string
		step(t, "tokenagent env zeebe --for oauth prints the worker's environment in the manifest", func() error {
			out, err := box.output(65532, "tokenagent", "env", "zeebe", "--for", "oauth")
			if err != nil {
				return err
			}
			printed = map[string]string{}
			for _, m := range regexp.MustCompile(`(?m)^export (\w+)='([^']*)'\r?$`).FindAllStringSubmatch(out, -1) {
				printed[m[1]] = m[2]
			}
			for _, e := range worker.Env {
				want := strings.Replace(e.Value, ":8731/", ":"+port+"/", 1)
				if printed[e.Name] != want {
					return fmt.Errorf("manifest sets %s=%q; tokenagent env prints %q", e.Name, e.Value, printed[e.Name])
				}
			}
			if len(printed) != len(worker.Env) {
				return fmt.Errorf("tokenagent env prints %v; the manifest sets %d variables", printed, len(worker.Env))
			}
			return nil
		})
		request := func(uid uint32) (string, error) {
			curl := exec.Command("curl", "-sS", "-u", printed["CLIENT_ID"]+":"+printed["CLIENT_SECRET"], "-d", "grant_type=client_credentials",
				"-d", "audience="+printed["AUDIENCE"], "-w", "\n%{http_code}", printed["TOKEN_URL"])
			curl.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
			out, err := curl.Output()
			return string(out), err
		}
		step(t, "the worker (uid 1000, same network namespace) gets the IdP's token from 127.0.0.1 with that environment", func() error {
			out, err := request(1000)
			var tr struct {
				AccessToken string `json:"access_token"`
			}
			if err == nil {
				json.Unmarshal([]byte(out[:strings.LastIndex(out, "\n")]), &tr)
			}
			if err != nil || !strings.HasSuffix(out, "\n200") || !slices.Contains(idp.Issued(), tr.AccessToken) {
				return fmt.Errorf("curl as uid 1000: %v: %.200s", err, out)
			}
			return nil
		})
		step(t, "another uid (1001) in the pod is refused", func() error {
			out, err := request(1001)
			if err != nil || strings.HasSuffix(out, "\n200") {
				return fmt.Errorf("curl as uid 1001: %v: %.200s", err, out)
			}
			return nil
		})
		step(t, "liveness and readiness (the manifest's commands) pass", func() error {
			return errors.Join(box.probe(agent.LivenessProbe), box.probe(agent.ReadinessProbe))
		})
		step(t, "SIGTERM: the agent drains and exits 0", stop)

		step(t, "the socket in an emptyDir (0777) is refused at start, naming the directory", func() error {
			shared := filepath.Join(dir, "sc-emptydir")
			os.Mkdir(shared, 0o777)
			os.Chmod(shared, 0o777) // the kubelet's emptyDir
			config := strings.Replace(config, `socket = "/run/tokenagent/agent.sock"`, `socket = "/run/tokenagent-shared/agent.sock"`, 1)
			mounts := map[string]string{
				"/etc/tokenagent":         kubeVolume(t, filepath.Join(dir, "sc-config-emptydir"), map[string]string{"agent.toml": config}, gid, 0o644),
				"/etc/tokenagent-secrets": mounts["/etc/tokenagent-secrets"],
				"/run/tokenagent-shared":  shared,
			}
			_, err := box.with(mounts).output(65532, append([]string{"/usr/bin/tokenagentd"}, agent.Args...)...)
			var ce *commandError
			if !errors.As(err, &ce) || wantExit(err, 1) != nil || !strings.Contains(ce.stderr, "/run/tokenagent-shared is writable by group or others (mode 0777") {
				return fmt.Errorf("want exit 1 naming /run/tokenagent-shared and its mode, got %v", err)
			}
			return nil
		})
	})
}

// step runs one step of the image test and says PASS or FAIL with its time.
func step(t *testing.T, name string, f func() error) {
	t.Helper()
	start := time.Now()
	if err := f(); err != nil {
		t.Fatalf("FAIL %s (%.1fs): %v", name, time.Since(start).Seconds(), err)
	}
	t.Logf("PASS %s (%.1fs)", name, time.Since(start).Seconds())
}

// nspawn runs programs of an exported image under systemd-nspawn,
// read-only, on the host's network (as pods share a node's loopback with
// nothing, the test's IdP and the sidecar's clients are on it).
type nspawn struct {
	t      *testing.T
	rootfs string
	env    []string          // the image's Env, and more
	helper string            // directory holding runas, bound at /tmp
	mounts map[string]string // container path → host directory
	// agentUID is the uid the agent runs as, and its probes; exited
	// yields the agent's exit.
	agentUID int64
	exited   <-chan struct{}
}

func (n *nspawn) with(mounts map[string]string) *nspawn {
	// The runtime makes a volume's mount point in the container, as
	// nspawn cannot in a read-only tree.
	for path := range mounts {
		os.MkdirAll(filepath.Join(n.rootfs, path), 0o755)
	}
	c := *n
	c.mounts = mounts
	return &c
}

func (n *nspawn) command(uid int64, env []string, argv ...string) *exec.Cmd {
	args := []string{"-q", "-D", n.rootfs, "--register=no", "--keep-unit", "--read-only", "--kill-signal=SIGTERM", "--console=pipe",
		"--bind-ro=" + n.helper + ":/tmp"}
	for path, host := range n.mounts {
		if strings.HasPrefix(path, "/etc/") {
			args = append(args, "--bind-ro="+host+":"+path)
		} else {
			args = append(args, "--bind="+host+":"+path)
		}
	}
	for _, e := range append(slices.Clone(n.env), env...) {
		args = append(args, "--setenv="+e)
	}
	// nspawn's --user needs getent in the image; runas sets the ids.
	args = append(args, "/tmp/runas", strconv.FormatInt(uid, 10), strconv.FormatInt(uid, 10))
	return exec.Command("systemd-nspawn", append(args, argv...)...)
}

// output runs argv in the image as uid: its stdout, and an error with its
// stderr and exit status.
func (n *nspawn) output(uid int64, argv ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := n.command(uid, nil, argv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = &commandError{argv: argv, err: err, stderr: nspawnNoise(stderr.String())}
	}
	return stdout.String(), err
}

// probe runs an exec probe's command in the image as the agent's probes
// run: as the container's user, which is the agent's.
func (n *nspawn) probe(p *corev1.Probe) error {
	_, err := n.output(n.agentUID, p.Exec.Command...)
	return err
}

// start runs the agent in the image as uid and returns the function that
// stops it with SIGTERM and says how it exited.
func (n *nspawn) start(t *testing.T, uid int64, argv []string, env ...string) func() error {
	t.Helper()
	n.agentUID = uid
	cmd := n.command(uid, env, argv...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var exit error
	go func() { exit = cmd.Wait(); close(done) }()
	n.exited = done
	var stopped bool
	var result error
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		if t.Failed() {
			t.Logf("agent's log:\n%s", nspawnNoise(log.String()))
		}
	})
	return func() error {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			<-done
			if result = exit; result != nil {
				result = fmt.Errorf("agent: %v:\n%s", result, nspawnNoise(log.String()))
			}
		}
		return result
	}
}

// waitProbe waits until the probe passes (the agent listens), failing
// if the agent exits first.
func (n *nspawn) waitProbe(t *testing.T, p *corev1.Probe) {
	t.Helper()
	step(t, "the agent starts: "+strings.Join(p.Exec.Command, " ")+" passes", func() error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := n.probe(p)
			if err == nil {
				return nil
			}
			select {
			case <-n.exited:
				return errors.New("the agent exited before it served")
			default:
			}
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

type commandError struct {
	argv   []string
	err    error
	stderr string
}

func (e *commandError) Error() string { return fmt.Sprintf("%q: %v: %s", e.argv, e.err, e.stderr) }
func (e *commandError) Unwrap() error { return e.err }

// wantExit checks that err is an exit with code.
func wantExit(err error, code int) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		return fmt.Errorf("want exit %d, got %v", code, err)
	}
	return nil
}

// nspawnNoise drops nspawn's own lines: a rootfs that is not a disk
// image, the /etc files an image without them cannot take, the halt.
func nspawnNoise(s string) string {
	var keep []string
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.Contains(line, "Attempted to remove disk file system") && !strings.HasPrefix(line, "Failed to mount /etc/localtime") &&
			!strings.HasPrefix(line, "Failed to mount /etc/resolv.conf") && !strings.HasPrefix(line, "Trying to halt container") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// kubeVolume lays files out as the kubelet does for a ConfigMap or Secret
// volume: a timestamped directory, the ..data link to it, and one link per
// key; the directory is root's, the files are root's and group gid's
// (fsGroup) with mode. It returns the volume's directory.
func kubeVolume(t *testing.T, dir string, files map[string]string, gid int, mode os.FileMode) string {
	t.Helper()
	data := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777|os.ModeSticky) // the kubelet's is 01777
	os.Symlink(filepath.Base(data), filepath.Join(dir, "..data"))
	for name, content := range files {
		path := filepath.Join(data, name)
		os.WriteFile(path, []byte(content), mode)
		os.Chmod(path, mode)
		os.Chown(path, 0, gid)
		os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name))
	}
	return dir
}

// buildRunas builds the small static program that starts a command as a
// numeric uid (systemd-nspawn's --user resolves names with getent, which
// the image does not have) into dir/helper, and returns that directory.
func buildRunas(t *testing.T, dir string) string {
	t.Helper()
	src, helper := filepath.Join(dir, "runas-src"), filepath.Join(dir, "helper")
	os.MkdirAll(src, 0o755)
	os.MkdirAll(helper, 0o755)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module runas\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(runasSource), 0o644)
	cmd := exec.Command("go", "build", "-o", filepath.Join(helper, "runas"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build runas: %v\n%s", err, out)
	}
	return helper
}

const runasSource = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

func main() {
	uid, _ := strconv.Atoi(os.Args[1])
	gid, _ := strconv.Atoi(os.Args[2])
	err := syscall.Setgroups(nil)
	if err == nil {
		err = syscall.Setgid(gid)
	}
	if err == nil {
		err = syscall.Setuid(uid)
	}
	path, err2 := exec.LookPath(os.Args[3]) // in the image's PATH, as a runtime does
	if err == nil {
		err = err2
	}
	if err == nil {
		err = syscall.Exec(path, os.Args[3:], os.Environ())
	}
	fmt.Fprintln(os.Stderr, "runas:", os.Args[3], err)
	os.Exit(126)
}
`

func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

func output(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
