package secretref

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/store"
)

// LoadConfig reads and validates the configuration file at path, through
// one open file: it refuses a file that someone other than the agent's
// user or root could change, and literal secrets in a file others can
// read. Secrets are not read yet: the engine reads them when it builds
// the profiles.
func LoadConfig(path string) (*config.Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := config.ParseConfig(data, path)
	if err != nil {
		return nil, err
	}
	if err := checkConfigOwner(path, fi); err != nil {
		return nil, err
	}
	if err := cfg.CheckLiteralSecrets(fi.Mode().Perm()&0o077 != 0); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Warnings are cfg.Warnings() and the literal client secrets that name a
// file beside the configuration (a forgotten "file:"), for check-config.
func Warnings(cfg *config.Config) []string {
	out := cfg.Warnings()
	for _, name := range cfg.ProfileNames() {
		sec := cfg.Profiles[name].ClientSecret
		if sec == "" || config.IsReference(sec) || config.LooksLikeFileName(sec) {
			continue // none, a reference, or already warned of
		}
		if _, err := os.Stat(filepath.Join(cfg.Dir(), sec)); err == nil {
			out = append(out, config.LiteralFileWarning(name))
		}
	}
	return out
}

// StoreKey reads a store key from a reference. Key files must not be
// readable by group or others: the key is all that protects the store.
func StoreKey(ref, baseDir string) (*store.Key, error) {
	if strings.HasPrefix(ref, config.RefFile) {
		path := strings.TrimPrefix(ref, config.RefFile)
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		fi, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist; create it with: (umask 077; openssl rand -base64 32 > %s)", path, path)
		}
		if err != nil {
			return nil, store.PathCause(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s has mode %04o; a store key must be readable by its owner only: chmod 600 %s", path, fi.Mode().Perm(), path)
		}
	}
	text, err := Read(ref, baseDir, Secret)
	if err != nil {
		return nil, err
	}
	return store.ParseKey(text)
}
