package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenagent/tokenagent/store"
)

// StoreMemory as the store setting keeps tokens in memory only.
const StoreMemory = "memory"

// StorePath is where the configuration keeps tokens: the store setting, or
// the default for the mode; "" when it says "memory".
func (c *Config) StorePath() string {
	switch c.Store {
	case StoreMemory:
		return ""
	case "":
		return DefaultStorePath()
	default:
		return c.Store
	}
}

// OpenStore opens the configuration's token store with its keys, or
// returns nil for store = "memory". Errors name the file, the key source
// and what to do.
func OpenStore(cfg *Config) (*store.Store, error) {
	path := cfg.StorePath()
	if path == "" {
		return nil, nil
	}
	key, source, err := cfg.storeKey(true)
	if err != nil {
		return nil, err
	}
	var previous []*store.Key
	for i, ref := range cfg.StoreKeyPrevious {
		k, err := readStoreKey(ref, cfg.dir())
		if err != nil {
			return nil, fmt.Errorf("store_key_previous[%d] %s: %w", i, ref, err)
		}
		previous = append(previous, k)
	}
	s, err := store.Open(path, store.Options{Key: key, PreviousKeys: previous})
	var wk *store.WrongKeyError
	if errors.As(err, &wk) {
		return nil, fmt.Errorf("%w; the current key, store_key %s, has key id %s. "+
			"To recover, list the key that sealed them in store_key_previous (they are re-sealed with the current key at start), "+
			"or delete %s to start fresh (costs one token request per profile)", err, source, key.ID(), path)
	}
	return s, err
}

// CheckStore reports where tokens will be kept and whether the store key
// can be used, without creating or opening anything: for check-config.
func (c *Config) CheckStore() (string, error) {
	path := c.StorePath()
	if path == "" {
		return "in memory only (store = \"memory\")", nil
	}
	key, source, err := c.storeKey(false)
	if err != nil {
		return "", err
	}
	if key == nil {
		return fmt.Sprintf("%s, key %s (created on first start)", path, source), nil
	}
	var previous []*store.Key
	for i, ref := range c.StoreKeyPrevious {
		k, err := readStoreKey(ref, c.dir())
		if err != nil {
			return "", fmt.Errorf("store_key_previous[%d] %s: %w", i, ref, err)
		}
		previous = append(previous, k)
	}
	// The records already there must open with these keys, as start
	// requires.
	where := fmt.Sprintf("%s, key %s (key id %s)", path, source, key.ID())
	err = store.CheckKeys(path, store.Options{Key: key, PreviousKeys: previous})
	var wk *store.WrongKeyError
	switch {
	case errors.As(err, &wk):
		return "", fmt.Errorf("%w; the current key, store_key %s, has key id %s: tokenagentd would refuse to start. "+
			"List the key that sealed them in store_key_previous, or delete %s to start fresh (costs one token request per profile)", err, source, key.ID(), path)
	case errors.Is(err, store.ErrInUse):
		return where + " (in use by the running agent: records not checked)", nil
	case err != nil:
		return "", err
	}
	return where, nil
}

// storeKey finds the store key: store_key from the configuration, else
// $CREDENTIALS_DIRECTORY/store-key, else store.key beside the
// configuration file, created on first start when create is set (else a
// missing file is reported as a nil key). It returns the key and a
// description of its source for messages.
func (c *Config) storeKey(create bool) (*store.Key, string, error) {
	if c.StoreKey != "" {
		k, err := readStoreKey(c.StoreKey, c.dir())
		if err != nil {
			return nil, c.StoreKey, fmt.Errorf("store_key %s: %w", c.StoreKey, err)
		}
		return k, c.StoreKey, nil
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "store-key")); err == nil {
			const ref = refCredential + "store-key"
			k, err := readStoreKey(ref, c.dir())
			if err != nil {
				return nil, ref, fmt.Errorf("store key %s: %w", ref, err)
			}
			return k, ref, nil
		}
	}
	dir := ConfigDir()
	if c.path != "" && filepath.IsAbs(c.path) {
		dir = filepath.Dir(c.path)
	}
	path := filepath.Join(dir, "store.key")
	ref := refFile + path
	if !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, ref, nil
		}
	} else if err := store.CreateKeyFile(path); err != nil {
		return nil, ref, err
	}
	k, err := readStoreKey(ref, dir)
	if err != nil {
		return nil, ref, fmt.Errorf("store key %s: %w", ref, err)
	}
	return k, ref, nil
}

// readStoreKey reads a key reference. Key files must not be readable by
// group or others: the key is all that protects the store.
func readStoreKey(ref, baseDir string) (*store.Key, error) {
	if strings.HasPrefix(ref, refFile) {
		path := strings.TrimPrefix(ref, refFile)
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
	text, err := readReference(ref, baseDir, secretRef)
	if err != nil {
		return nil, err
	}
	return store.ParseKey(text)
}

// KeyFiles lists the files the store keys are read from (file:
// references, resolved against the configuration's directory), for the
// daemon's ownership checks.
func (c *Config) KeyFiles() []string {
	var out []string
	for _, ref := range append([]string{c.StoreKey}, c.StoreKeyPrevious...) {
		if path, ok := strings.CutPrefix(ref, refFile); ok {
			if !filepath.IsAbs(path) {
				path = filepath.Join(c.dir(), path)
			}
			out = append(out, path)
		}
	}
	return out
}
