package packaging_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// manifestObject is one document of a shipped manifest.
type manifestObject struct {
	file, kind, namespace, name string
	doc                         []byte
}

func (o manifestObject) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.kind, o.namespace, o.name, o.file)
}

// manifestObjects reads every document of every kubernetes/*.yaml.
func manifestObjects(t *testing.T) []manifestObject {
	t.Helper()
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no kubernetes/*.yaml")
	}
	var out []manifestObject
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(data, []byte("\n---\n")) {
			var meta struct {
				Kind     string
				Metadata struct{ Name, Namespace string }
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if meta.Kind == "" || meta.Metadata.Name == "" {
				t.Fatalf("%s: a document without kind or metadata.name", f)
			}
			out = append(out, manifestObject{filepath.Base(f), meta.Kind, meta.Metadata.Namespace, meta.Metadata.Name, doc})
		}
	}
	return out
}

// podSpec is the pod a workload object runs, decoded strictly.
func podSpec(t *testing.T, o manifestObject) (corev1.PodSpec, bool) {
	switch o.kind {
	case "DaemonSet":
		var ds appsv1.DaemonSet
		strict(t, o.doc, &ds)
		return ds.Spec.Template.Spec, true
	case "Pod":
		var pod corev1.Pod
		strict(t, o.doc, &pod)
		return pod.Spec, true
	}
	return corev1.PodSpec{}, false
}

// builtImage is the image packaging/container/build.sh tags by default.
func builtImage(t *testing.T) string {
	t.Helper()
	script, err := os.ReadFile("container/build.sh")
	if err != nil {
		t.Fatalf("no image recipe: %v", err)
	}
	version := regexp.MustCompile(`(?m)^VERSION="\$\{VERSION:-([^}]+)\}"$`).FindSubmatch(script)
	name := regexp.MustCompile(`(?m)^IMAGE="\$\{IMAGE:-([^}]+)\}"$`).FindSubmatch(script)
	if version == nil || name == nil {
		t.Fatal("container/build.sh: no default VERSION=\"${VERSION:-...}\" or IMAGE=\"${IMAGE:-...}\" line")
	}
	return string(name[1]) + ":" + string(version[1])
}

// imageBinaries are the programs the Containerfile copies into /usr/bin.
func imageBinaries(t *testing.T) []string {
	t.Helper()
	file, err := os.ReadFile("container/Containerfile")
	if err != nil {
		t.Fatalf("no image recipe: %v", err)
	}
	var bins []string
	for _, m := range regexp.MustCompile(`(?m)^COPY ([^-\n][^\n]*) /usr/bin/$`).FindAllSubmatch(file, -1) {
		bins = append(bins, strings.Fields(string(m[1]))...)
	}
	return bins
}

// exitUnreachable is tokenagent's exit code for "agent not reachable"
// (cmd/internal/cli.ExitUnreachable).
const exitUnreachable = 3

// publicImages are the third-party images the workload examples run,
// each pinned to a version.
var publicImages = []string{"curlimages/curl:8.10.1"}

// TestKubernetesReferencesExist: every Secret, Secret key, ConfigMap,
// PriorityClass and image the shipped manifests use is defined beside them
// or built by packaging/container/build.sh; the agent's configs read only
// files their containers mount and variables they set; and every probe
// runs a program the image holds, with arguments that program accepts.
func TestKubernetesReferencesExist(t *testing.T) {
	objects := manifestObjects(t)
	defined := map[string]manifestObject{}
	for _, o := range objects {
		id := o.kind + " " + o.namespace + "/" + o.name
		if other, ok := defined[id]; ok {
			t.Errorf("%s and %s: one name, so applying both replaces one", o, other)
		}
		defined[id] = o
	}
	secretKeys := func(ns, name string) ([]string, error) {
		o, ok := defined["Secret "+ns+"/"+name]
		if !ok {
			return nil, fmt.Errorf("Secret %s/%s is not defined in kubernetes/ (add it to secrets-example.yaml)", ns, name)
		}
		var s corev1.Secret
		strict(t, o.doc, &s)
		var keys []string
		for k := range s.StringData {
			keys = append(keys, k)
		}
		for k := range s.Data {
			keys = append(keys, k)
		}
		return keys, nil
	}
	configMapData := func(ns, name string) (map[string]string, error) {
		o, ok := defined["ConfigMap "+ns+"/"+name]
		if !ok {
			return nil, fmt.Errorf("ConfigMap %s/%s is not defined in kubernetes/", ns, name)
		}
		var cm corev1.ConfigMap
		strict(t, o.doc, &cm)
		return cm.Data, nil
	}
	image, binaries := builtImage(t), imageBinaries(t)
	tokenagent := buildCLI(t)
	workloads := 0
	for _, o := range objects {
		spec, ok := podSpec(t, o)
		if !ok {
			continue
		}
		workloads++
		if o.kind == "DaemonSet" {
			// A node agent runs on every node: it tolerates every taint,
			// and is evicted last.
			if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
				return tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == ""
			}) {
				t.Errorf("%s does not tolerate every taint (tolerations: [{operator: Exists}])", o)
			}
			if spec.PriorityClassName == "" {
				t.Errorf("%s has no priorityClassName", o)
			}
		}
		if p := spec.PriorityClassName; p != "" && p != "system-node-critical" && p != "system-cluster-critical" {
			if _, ok := defined["PriorityClass /"+p]; !ok {
				t.Errorf("%s: priorityClassName %q is neither built in nor defined", o, p)
			}
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
			switch {
			case v.Secret != nil:
				keys, err := secretKeys(o.namespace, v.Secret.SecretName)
				if err != nil {
					t.Errorf("%s: volume %s: %v", o, v.Name, err)
				}
				if len(keys) == 0 && err == nil {
					t.Errorf("%s: volume %s: Secret %s has no keys", o, v.Name, v.Secret.SecretName)
				}
			case v.ConfigMap != nil:
				if _, err := configMapData(o.namespace, v.ConfigMap.Name); err != nil {
					t.Errorf("%s: volume %s: %v", o, v.Name, err)
				}
			}
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			where := fmt.Sprintf("%s: container %s", o, c.Name)
			isAgent := strings.Contains(c.Image, "tokenagent")
			switch {
			case isAgent && c.Image != image:
				t.Errorf("%s runs image %q; packaging/container/build.sh builds %q", where, c.Image, image)
			case !isAgent && !slices.Contains(publicImages, c.Image):
				t.Errorf("%s runs image %q, neither built here nor a pinned public image of the examples", where, c.Image)
			}
			env := map[string]bool{}
			for _, e := range c.Env {
				env[e.Name] = true
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
					keys, err := secretKeys(o.namespace, ref.SecretKeyRef.Name)
					if err != nil {
						t.Errorf("%s: env %s: %v", where, e.Name, err)
					} else if !slices.Contains(keys, ref.SecretKeyRef.Key) {
						t.Errorf("%s: env %s: Secret %s has no key %q", where, e.Name, ref.SecretKeyRef.Name, ref.SecretKeyRef.Key)
					}
				}
				if ref := e.ValueFrom; ref != nil && ref.ConfigMapKeyRef != nil {
					if _, err := configMapData(o.namespace, ref.ConfigMapKeyRef.Name); err != nil {
						t.Errorf("%s: env %s: %v", where, e.Name, err)
					}
				}
			}
			if !isAgent {
				continue
			}
			command := append(slices.Clone(c.Command), c.Args...)
			if len(c.Command) > 0 && !slices.Contains(binaries, c.Command[0]) {
				t.Errorf("%s: command %q is not in the image (it holds %v)", where, c.Command[0], binaries)
			}
			checkAgentConfig(t, where, o.namespace, command, c, volumes, env, secretKeys, configMapData)
			for _, probe := range []struct {
				name  string
				probe *corev1.Probe
			}{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}, {"startup", c.StartupProbe}} {
				if probe.probe == nil {
					if probe.name != "startup" {
						t.Errorf("%s has no %s probe", where, probe.name)
					}
					continue
				}
				if probe.probe.Exec == nil || len(probe.probe.Exec.Command) == 0 {
					t.Errorf("%s: %s probe is not an exec probe", where, probe.name)
					continue
				}
				argv := probe.probe.Exec.Command
				if !slices.Contains(binaries, argv[0]) {
					t.Errorf("%s: %s probe runs %q, which is not in the image (it holds %v)", where, probe.name, argv[0], binaries)
					continue
				}
				// The liveness probe must not fail for what a restart
				// cannot fix: a profile that cannot serve.
				if probe.name != "readiness" && (slices.Contains(argv, "--ready") || slices.Contains(argv, "status")) {
					t.Errorf("%s: %s probe %q fails when a profile cannot serve; a restart only asks the IdP again", where, probe.name, argv)
				}
				// Run it against a socket nobody serves: a command the CLI
				// knows, with flags it accepts, says the agent is not
				// reachable (3); anything else is exit 2, a usage error.
				args := replaceSocket(argv[1:], filepath.Join(t.TempDir(), "nobody.sock"))
				out, err := exec.Command(filepath.Join(filepath.Dir(tokenagent), argv[0]), args...).CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != exitUnreachable {
					t.Errorf("%s: %s probe %q against no agent: %v, want exit %d (agent not reachable):\n%s", where, probe.name, argv, err, exitUnreachable, out)
				}
			}
		}
	}
	if workloads < 3 {
		t.Errorf("found %d pod specs in kubernetes/, want the DaemonSet, the workload and the sidecar", workloads)
	}
}

// replaceSocket returns args with --socket's value replaced by sock.
func replaceSocket(args []string, sock string) []string {
	out := slices.Clone(args)
	for i := range out {
		if out[i] == "--socket" && i+1 < len(out) {
			out[i+1] = sock
		}
	}
	return out
}

// checkAgentConfig: the agent container's --config is mounted from a
// ConfigMap that holds it, and each file: and env: reference in it is a
// key of a Secret mounted there or a variable the container sets.
func checkAgentConfig(t *testing.T, where, namespace string, command []string, c corev1.Container, volumes map[string]corev1.Volume, env map[string]bool,
	secretKeys func(ns, name string) ([]string, error), configMapData func(ns, name string) (map[string]string, error)) {
	t.Helper()
	i := slices.Index(command, "--config")
	if i < 0 || i+1 >= len(command) {
		t.Errorf("%s: no --config in %q", where, command)
		return
	}
	configPath := command[i+1]
	// mounted finds the volume and the key within it that a path names.
	mounted := func(path string) (corev1.Volume, string, bool) {
		for _, m := range c.VolumeMounts {
			if rest, ok := strings.CutPrefix(path, m.MountPath+"/"); ok {
				return volumes[m.Name], rest, true
			}
		}
		return corev1.Volume{}, "", false
	}
	v, key, ok := mounted(configPath)
	if !ok || v.ConfigMap == nil {
		t.Errorf("%s: --config %s is not in a mounted ConfigMap", where, configPath)
		return
	}
	data, err := configMapData(namespace, v.ConfigMap.Name)
	if err != nil {
		return // said with the volumes
	}
	config, ok := data[key]
	if !ok {
		t.Errorf("%s: ConfigMap %s has no key %q for --config %s", where, v.ConfigMap.Name, key, configPath)
		return
	}
	var active strings.Builder // the config without its comments
	for _, line := range strings.Split(config, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		active.WriteString(line + "\n")
	}
	for _, m := range regexp.MustCompile(`"(file|env):([^"]+)"`).FindAllStringSubmatch(active.String(), -1) {
		switch m[1] {
		case "env":
			if !env[m[2]] {
				t.Errorf("%s: the config reads env:%s, which the container does not set", where, m[2])
			}
		case "file":
			v, key, ok := mounted(m[2])
			if !ok || v.Secret == nil {
				t.Errorf("%s: the config reads file:%s, which is not in a mounted Secret", where, m[2])
				continue
			}
			if keys, err := secretKeys(namespace, v.Secret.SecretName); err == nil && !slices.Contains(keys, key) {
				t.Errorf("%s: the config reads file:%s; Secret %s has no key %q", where, m[2], v.Secret.SecretName, key)
			}
		}
	}
}

// buildCLI builds the tokenagent CLI into a temporary directory.
func buildCLI(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	bin := filepath.Join(t.TempDir(), "tokenagent")
	if out, err := exec.Command(goTool, "build", "-o", bin, "../cmd/tokenagent").CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/tokenagent: %v\n%s", err, out)
	}
	return bin
}
