package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

// TestSelectorsOverTheSocket: a real tokenagentd and separate caller
// processes of one uid (4242), told apart by their executables: the
// allowed program gets its profile's token; a copy at another path is
// refused by an exe selector and admitted by a sha256 one; a copy with
// another digest is refused by it. The log names the selector that
// refused each, never to the caller; root's status lists the callers
// and the entry that admitted each.
func TestSelectorsOverTheSocket(t *testing.T) {
	t.Parallel() // its own daemon process, directory and socket
	if os.Geteuid() != 0 {
		t.Skip("needs root to run callers as another user")
	}
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "daemon-secret", Method: "client_secret_basic"})
	dir := filepath.Join(testDir, "selectors")
	os.MkdirAll(dir, 0o755)
	cli := buildCLI(t)
	data, err := os.ReadFile(cli)
	if err != nil {
		t.Fatal(err)
	}
	place := func(name string, extra string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, append(slices.Clone(data), extra...), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	allowed, moved, other := place("allowed", ""), place("moved", ""), place("other", "\n")
	sum := sha256.Sum256(data)
	config := filepath.Join(dir, "agent.toml")
	writeConfig(t, config, "store = \"memory\"\nsocket_mode = \"0666\"\n"+
		profileTOML("byexe", idp.TokenURL, "c")+fmt.Sprintf("[[profiles.byexe.allow]]\nuid = 4242\nexe = %q\n\n", allowed)+
		profileTOML("bysum", idp.TokenURL, "c")+fmt.Sprintf("[[profiles.bysum.allow]]\nsha256 = %q\n\n", hex.EncodeToString(sum[:])))
	d := startDaemon(t, config)

	ask := func(bin, profile string) (string, bool) {
		cmd := exec.Command(bin, "token", profile)
		cmd.Env = []string{"TOKENAGENT_SOCKET=" + d.socket}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err == nil
	}
	for _, c := range []struct {
		bin, profile string
		want         bool
	}{
		{allowed, "byexe", true},
		{moved, "byexe", false},
		{allowed, "bysum", true},
		{moved, "bysum", true},
		{other, "bysum", false},
	} {
		out, ok := ask(c.bin, c.profile)
		if ok != c.want {
			t.Errorf("%s token %s as uid 4242: served %v (%s), want %v", filepath.Base(c.bin), c.profile, ok, out, c.want)
		}
		if !ok && (strings.Contains(out, "allow[") || strings.Contains(out, filepath.Base(c.bin))) {
			t.Errorf("%s token %s: the refusal tells the caller which selector failed: %s", filepath.Base(c.bin), c.profile, out)
		}
	}
	// The copy, mounted over the allowed path in a mount namespace of its
	// own: the kernel names it by the allowed path, but it is another file.
	if _, err := exec.LookPath("unshare"); err == nil {
		spoof := exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$1" "$2" && exec setpriv --reuid 4242 --regid 4242 --clear-groups "$2" token byexe`, "sh", moved, allowed)
		spoof.Env = []string{"TOKENAGENT_SOCKET=" + d.socket, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if out, err := spoof.CombinedOutput(); err == nil {
			t.Errorf("a copy mounted over the allowed path in its own mount namespace got byexe's token (%d bytes of output)", len(out))
		} else if !strings.Contains(string(out), "unknown profile") {
			t.Logf("mount-namespace case not run: %v %s", err, out)
		} else {
			d.waitLog("is named like the allowed one, but is not the file at " + allowed)
		}
	}
	d.waitLog(fmt.Sprintf(`allow[0]: exe \"%s\" is not \"%s\"`, moved, allowed))
	d.waitLog(fmt.Sprintf(`allow[0]: sha256 of \"%s\" is `, other))

	status := exec.Command(cli, "status")
	status.Env = []string{"TOKENAGENT_SOCKET=" + d.socket}
	out, err := status.CombinedOutput()
	if err != nil {
		t.Fatalf("tokenagent status as root: %v\n%s", err, out)
	}
	for _, profile := range []string{"byexe", "bysum"} {
		if !regexp.MustCompile(profile + `\s+4242\s+\d+\s+allow\[0\]`).Match(out) {
			t.Errorf("root's status does not show uid 4242 admitted to %s by allow[0]:\n%s", profile, out)
		}
	}
}
