package packaging_test

import (
	"encoding/xml"
	"os"
	"strings"
	"testing"
)

// TestLaunchdPlist: the hand-installed plist parses, runs the agent with
// root's default configuration (root-owned /etc, not Homebrew's
// user-owned prefix), and logs to a file the shipped newsyslog
// configuration rotates.
func TestLaunchdPlist(t *testing.T) {
	data, err := os.ReadFile("launchd/dev.tokenagent.agent.plist")
	if err != nil {
		t.Fatal(err)
	}
	var plist struct {
		Dict struct {
			Items []struct {
				XMLName xml.Name
				Text    string   `xml:",chardata"`
				Strings []string `xml:"string"`
			} `xml:",any"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(data, &plist); err != nil {
		t.Fatalf("plist: %v", err)
	}
	values := map[string]string{}
	var args []string
	items := plist.Dict.Items
	for i := 0; i+1 < len(items); i++ {
		if items[i].XMLName.Local != "key" {
			continue
		}
		if items[i+1].XMLName.Local == "array" {
			args = items[i+1].Strings
		}
		values[items[i].Text] = items[i+1].Text
	}
	if strings.Join(args, " ") != "/usr/local/bin/tokenagentd --config /etc/tokenagent/agent.toml" {
		t.Errorf("ProgramArguments = %q, want the agent with /etc/tokenagent/agent.toml", args)
	}
	logFile := values["StandardErrorPath"]
	rotation, err := os.ReadFile("launchd/tokenagent.newsyslog.conf")
	if err != nil {
		t.Fatal(err)
	}
	rotated := false
	for _, line := range strings.Split(string(rotation), "\n") {
		if f := strings.Fields(line); len(f) >= 6 && f[0] == logFile {
			rotated = true
		}
	}
	if logFile == "" || !rotated {
		t.Errorf("StandardErrorPath %q is not rotated by tokenagent.newsyslog.conf", logFile)
	}
}
