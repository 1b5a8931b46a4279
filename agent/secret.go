package agent

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tokenagent/tokenagent/store"
)

// Secret references: where a secret lives, never the secret itself.
const (
	refEnv        = "env:"
	refFile       = "file:"
	refCredential = "systemd-credential:"
)

func isReference(v string) bool {
	return strings.HasPrefix(v, refEnv) || strings.HasPrefix(v, refFile) || strings.HasPrefix(v, refCredential)
}

// refKind says what a reference may be and how its file is checked.
type refKind int

const (
	secretOrLiteral refKind = iota // a secret; a literal is allowed
	secretRef                      // a secret (key material); must be a reference
	publicRef                      // public material (a certificate); must be a reference
)

// readReference returns the bytes a reference points at. Errors name the
// reference, never its content.
func readReference(ref, baseDir string, kind refKind) ([]byte, error) {
	switch {
	case strings.HasPrefix(ref, refEnv):
		name := strings.TrimPrefix(ref, refEnv)
		v, ok := lookupEnvSecret(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("environment variable %s is not set", name)
		case v == "":
			return nil, fmt.Errorf("environment variable %s is set but empty", name)
		}
		return []byte(v), nil
	case strings.HasPrefix(ref, refFile):
		path := strings.TrimPrefix(ref, refFile)
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		return readFile(path, kind)
	case strings.HasPrefix(ref, refCredential):
		name := strings.TrimPrefix(ref, refCredential)
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, fmt.Errorf("$CREDENTIALS_DIRECTORY is not set; add LoadCredential=%s:PATH (or SetCredentialEncrypted=) to the service unit", name)
		}
		if name == "" || strings.ContainsRune(name, '/') {
			return nil, errors.New("a credential name has no '/'")
		}
		return readFile(filepath.Join(dir, name), kind)
	case kind == secretOrLiteral:
		return []byte(ref), nil
	default:
		return nil, errors.New("use file:PATH, env:NAME or systemd-credential:NAME")
	}
}

// readFile reads a referenced file, refusing a secret that any user on the
// host can read.
func readFile(path string, kind refKind) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("file:%s: %w", path, store.PathCause(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("file:%s: %w", path, err)
	}
	if kind != publicRef && fi.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("file:%s has mode %04o, readable by every user; chmod o-r it (0600 or 0640)", path, fi.Mode().Perm())
	}
	const maxSecretFile = 1 << 20
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("file:%s: %w", path, err)
	}
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("file:%s is larger than 1 MiB; is it the right file?", path)
	}
	return data, nil
}

// trimNewline drops one trailing newline, which editors and `echo` add.
func trimNewline(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// decodeBase64Binary accepts standard base64 with surrounding whitespace.
func decodeBase64Binary(b []byte) ([]byte, error) {
	return base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
}

// envSecrets holds the env: secrets HideEnvSecrets moved out of the
// process environment, so that a reload still finds them.
var envSecrets sync.Map // name → value

func lookupEnvSecret(name string) (string, bool) {
	if v, ok := envSecrets.Load(name); ok {
		return v.(string), true
	}
	return os.LookupEnv(name)
}

// HideEnvSecrets moves the values of the configuration's env: references
// (client secrets, keys, passwords, store keys) out of the process
// environment into the agent's memory, where later reloads read them:
// nothing the agent starts inherits them, and they are no longer in
// os.Environ. It returns the variables it moved. Call it once the
// configuration has been read successfully.
func (c *Config) HideEnvSecrets() []string {
	refs := append([]string{c.StoreKey}, c.StoreKeyPrevious...)
	for _, name := range c.ProfileNames() {
		p := c.Profiles[name]
		refs = append(refs, p.ClientSecret, p.PrivateKey, p.PKCS12, p.PKCS12Password, p.LocalSecret)
	}
	var moved []string
	for _, ref := range refs {
		name, ok := strings.CutPrefix(ref, refEnv)
		if !ok {
			continue
		}
		if v, set := os.LookupEnv(name); set {
			envSecrets.Store(name, v)
			os.Unsetenv(name)
			moved = append(moved, name)
		}
	}
	return moved
}
