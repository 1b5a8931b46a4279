package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReliabilityTable keeps docs/reliability.md true: at least 30 rows,
// and every test it names exists.
func TestReliabilityTable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/reliability.md")
	if err != nil {
		t.Fatal(err)
	}
	var sources strings.Builder
	filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, "_test.go") {
			data, _ := os.ReadFile(path)
			sources.Write(data)
		}
		return nil
	})
	row := regexp.MustCompile(`(?m)^\| .+ \| .+ \| (.+) \|$`)
	name := regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)`")
	// CI's scripts under packaging/ (run as root by .ci/run) are tests too.
	script := regexp.MustCompile("`(packaging/test-[a-z-]+\\.sh)`")
	rows := 0
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		names := name.FindAllStringSubmatch(m[1], -1)
		scripts := script.FindAllStringSubmatch(m[1], -1)
		for _, sc := range scripts {
			if _, err := os.Stat(filepath.Join("../..", sc[1])); err != nil {
				t.Errorf("docs/reliability.md names %s, which does not exist", sc[1])
			}
		}
		if len(names) == 0 && len(scripts) > 0 {
			rows++
			continue
		}
		if len(names) == 0 {
			if !strings.Contains(m[1], "cmd/tokenagent-bench") && m[1] != "tests" && !strings.HasPrefix(m[1], "---") {
				t.Errorf("row names no test: %s", m[0])
			}
			continue
		}
		rows++
		for _, n := range names {
			if !strings.Contains(sources.String(), "func "+n[1]+"(") {
				t.Errorf("docs/reliability.md names %s, which does not exist", n[1])
			}
		}
	}
	if rows < 30 {
		t.Errorf("docs/reliability.md has %d rows with tests, want at least 30", rows)
	}
}
