package packaging_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/packaging"
)

// documents splits a multi-document YAML file.
func documents(t *testing.T, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out[meta.Kind] = doc
	}
	return out
}

// strict decodes YAML into a Kubernetes API type; unknown fields fail.
func strict(t *testing.T, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("manifest does not decode strictly: %v", err)
	}
}

func TestKubernetesManifests(t *testing.T) {
	socketDir := filepath.Dir(ipc.SystemSocketPath)
	docs := documents(t, "kubernetes/daemonset.yaml")
	for _, kind := range []string{"Namespace", "ConfigMap", "DaemonSet"} {
		if docs[kind] == nil {
			t.Fatalf("daemonset.yaml has no %s", kind)
		}
	}
	var ns corev1.Namespace
	strict(t, docs["Namespace"], &ns)
	var cm corev1.ConfigMap
	strict(t, docs["ConfigMap"], &cm)
	var ds appsv1.DaemonSet
	strict(t, docs["DaemonSet"], &ds)

	// The agent's config in the ConfigMap is valid and puts the socket
	// where the agent puts it by default as root, and where the
	// workload looks.
	cfg, err := config.ParseConfig([]byte(cm.Data["agent.toml"]), "configmap agent.toml")
	if err != nil {
		t.Fatalf("ConfigMap agent.toml: %v", err)
	}
	if cfg.Socket != ipc.SystemSocketPath {
		t.Errorf("ConfigMap socket = %q, want the default %q", cfg.Socket, ipc.SystemSocketPath)
	}
	pod := ds.Spec.Template.Spec
	if !hostPathMounted(pod, socketDir) {
		t.Errorf("DaemonSet does not mount hostPath %s at %s", socketDir, socketDir)
	}

	var workload corev1.Pod
	strict(t, documents(t, "kubernetes/workload-example.yaml")["Pod"], &workload)
	if !hostPathMounted(workload.Spec, socketDir) {
		t.Errorf("workload does not mount hostPath %s at %s", socketDir, socketDir)
	}
	env := workload.Spec.Containers[0].Env
	if len(env) == 0 || env[0].Name != ipc.EnvSocket || env[0].Value != ipc.SystemSocketPath {
		t.Errorf("workload env = %v, want %s=%s", env, ipc.EnvSocket, ipc.SystemSocketPath)
	}
	if uid := workload.Spec.SecurityContext.RunAsUser; uid == nil || !strings.Contains(cm.Data["agent.toml"], "allow_uids = [1000]") || *uid != 1000 {
		t.Error("workload's runAsUser is not in the profile's allow list")
	}
}

func hostPathMounted(pod corev1.PodSpec, dir string) bool {
	for _, v := range pod.Volumes {
		if v.HostPath == nil || v.HostPath.Path != dir {
			continue
		}
		for _, c := range pod.Containers {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name && m.MountPath == dir {
					return true
				}
			}
		}
	}
	return false
}

// TestSystemdUnit: the unit `tokenagent service install` writes is the
// packaged one with only ExecStart changed, and systemd accepts it.
func TestSystemdUnit(t *testing.T) {
	packaged, err := os.ReadFile("systemd/tokenagent.service")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := packaging.SystemdUnitTemplate()
	if !strings.Contains(tmpl, "ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}") || strings.Contains(tmpl, "/usr/bin/tokenagentd --config") {
		t.Fatalf("template's ExecStart was not replaced:\n%s", tmpl)
	}
	for _, line := range strings.Split(string(packaged), "\n") {
		if !strings.HasPrefix(line, "ExecStart=") && !strings.Contains(tmpl, line) {
			t.Errorf("template lost the line %q", line)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	self, _ := os.Executable()
	unit := filepath.Join(t.TempDir(), "tokenagent.service")
	os.WriteFile(unit, []byte(packaging.SystemdUnit(self, []string{"run", "--config", "/etc/tokenagent/agent.toml"})), 0o644)
	if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
