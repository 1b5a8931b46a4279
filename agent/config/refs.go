package config

import (
	"path/filepath"
	"strings"
)

// Secret references: where a secret lives, never the secret itself.
// Package secretref reads them; here is only their syntax.
const (
	RefEnv        = "env:"
	RefFile       = "file:"
	RefCredential = "systemd-credential:"
)

// IsReference reports whether v is a secret reference rather than a
// literal value.
func IsReference(v string) bool {
	return strings.HasPrefix(v, RefEnv) || strings.HasPrefix(v, RefFile) || strings.HasPrefix(v, RefCredential)
}

// RefName is how a secret setting is named in errors: the reference, or
// "(literal value)" for a literal secret, which must never be shown.
func RefName(v string) string {
	if IsReference(v) {
		return v
	}
	return "(literal value)"
}

// EnvRefs are the variables the configuration's env: references name
// (client secrets, keys, passwords, store keys), in order, with
// duplicates.
func (c *Config) EnvRefs() []string {
	refs := append([]string{c.StoreKey, c.MetricsToken}, c.StoreKeyPrevious...)
	for _, name := range c.ProfileNames() {
		p := c.Profiles[name]
		refs = append(refs, p.ClientSecret, p.PrivateKey, p.PKCS12, p.PKCS12Password, p.LocalSecret)
	}
	var out []string
	for _, ref := range refs {
		if name, ok := strings.CutPrefix(ref, RefEnv); ok {
			out = append(out, name)
		}
	}
	return out
}

// KeyFiles lists the files the store keys are read from (file:
// references, resolved against the configuration's directory), for the
// daemon's ownership checks.
func (c *Config) KeyFiles() []string {
	var out []string
	for _, ref := range append([]string{c.StoreKey}, c.StoreKeyPrevious...) {
		if path, ok := strings.CutPrefix(ref, RefFile); ok {
			if !filepath.IsAbs(path) {
				path = filepath.Join(c.Dir(), path)
			}
			out = append(out, path)
		}
	}
	return out
}

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

// LocalCA is where the local CA of token_endpoint_https lives: its key
// (local-ca.key, in the store's directory; with tokens kept in memory,
// in the configuration's, where store.key is by default) and its
// published certificate (local_ca_cert, a relative path being the
// configuration directory's; "" when not set: the agent publishes it
// beside its socket, whose directory lets in exactly the socket's
// audience).
func (c *Config) LocalCA() (keyPath, certPath string) {
	dir := filepath.Dir(c.StorePath())
	if c.StorePath() == "" {
		dir = filepath.Dir(DefaultStorePath())
		if c.path != "" {
			dir = c.Dir()
		}
	}
	certPath = c.LocalCACert
	if certPath != "" && !filepath.IsAbs(certPath) {
		certPath = filepath.Join(c.Dir(), certPath)
	}
	return filepath.Join(dir, "local-ca.key"), certPath
}
