package config

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// unknownKeyError names an undecoded key and, when it can find it, its line.
func unknownKeyError(data []byte, name string, key toml.Key) error {
	where := name
	if line := keyLine(data, key); line > 0 {
		where = fmt.Sprintf("%s:%d", name, line)
	}
	leaf := key[len(key)-1]
	if len(key) == 1 {
		return fmt.Errorf("config %s: unknown key %q", where, leaf)
	}
	return fmt.Errorf("config %s: unknown key %q in [%s]", where, leaf, key[:len(key)-1].String())
}

// Compiled on first use: only a config with an unknown key needs them.
var (
	tableLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$`) })
	keyValue  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s*([A-Za-z0-9_\-."' ]+?)\s*=`) })
)

// keyLine finds the line of a (possibly nested) key in a TOML document.
// BurntSushi/toml reports positions only for syntax errors, so strict
// decoding looks the key up itself. It returns 0 when not found.
func keyLine(data []byte, key toml.Key) int {
	want := key.String()
	var table []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := tableLine().FindStringSubmatch(line); m != nil {
			table = splitKey(m[1])
			if strings.Join(table, ".") == want {
				return n
			}
			continue
		}
		if m := keyValue().FindStringSubmatch(line); m != nil {
			full := append(slices.Clone(table), splitKey(m[1])...)
			if strings.Join(full, ".") == want {
				return n
			}
		}
	}
	return 0
}

func splitKey(s string) []string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return parts
}
