// Package secretref reads what the configuration's secret references
// point at: env:NAME, file:PATH and systemd-credential:NAME, with the
// checks on the files themselves (a secret no other user may read, a
// configuration file no other user may change), and store keys. It owns
// the one start-up side effect on the environment: HideEnvSecrets moves
// env: secrets out of it. Errors name the reference, never its content.
package secretref

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

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/store"
)

// Kind says what a reference may be and how its file is checked.
type Kind int

const (
	SecretOrLiteral Kind = iota // a secret; a literal is allowed
	Secret                      // a secret (key material); must be a reference
	Public                      // public material (a certificate); must be a reference
)

// Read returns the bytes a reference points at; a relative file: path is
// resolved against baseDir (the configuration's directory). Errors name
// the reference, never its content.
func Read(ref, baseDir string, kind Kind) ([]byte, error) {
	switch {
	case strings.HasPrefix(ref, config.RefEnv):
		name := strings.TrimPrefix(ref, config.RefEnv)
		v, ok := lookupEnvSecret(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("environment variable %s is not set", name)
		case v == "":
			return nil, fmt.Errorf("environment variable %s is set but empty", name)
		}
		return []byte(v), nil
	case strings.HasPrefix(ref, config.RefFile):
		path := strings.TrimPrefix(ref, config.RefFile)
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		return readFile(path, kind)
	case strings.HasPrefix(ref, config.RefCredential):
		name := strings.TrimPrefix(ref, config.RefCredential)
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, fmt.Errorf("$CREDENTIALS_DIRECTORY is not set; add LoadCredential=%s:PATH (or SetCredentialEncrypted=) to the service unit", name)
		}
		if name == "" || strings.ContainsRune(name, '/') {
			return nil, errors.New("a credential name has no '/'")
		}
		return readFile(filepath.Join(dir, name), kind)
	case kind == SecretOrLiteral:
		return []byte(ref), nil
	default:
		return nil, errors.New("use file:PATH, env:NAME or systemd-credential:NAME")
	}
}

// readFile reads a referenced file, refusing a secret that any user on the
// host can read.
func readFile(path string, kind Kind) ([]byte, error) {
	data, _, err := readFileInfo(path, kind)
	return data, err
}

// readFileInfo is readFile that also returns the opened file's fstat.
func readFileInfo(path string, kind Kind) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("file:%s: %w", path, store.PathCause(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("file:%s: %w", path, err)
	}
	if kind != Public && fi.Mode().Perm()&0o004 != 0 {
		return nil, nil, fmt.Errorf("file:%s has mode %04o, readable by every user; chmod o-r it (0600 or 0640)", path, fi.Mode().Perm())
	}
	const maxSecretFile = 1 << 20
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, nil, fmt.Errorf("file:%s: %w", path, err)
	}
	if len(data) > maxSecretFile {
		return nil, nil, fmt.Errorf("file:%s is larger than 1 MiB; is it the right file?", path)
	}
	return data, fi, nil
}

// TrimNewline drops one trailing newline, which editors and `echo` add.
func TrimNewline(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// DecodeBase64 accepts standard base64 with surrounding whitespace.
func DecodeBase64(b []byte) ([]byte, error) {
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

// HideEnvSecrets moves the values of cfg's env: references (client
// secrets, keys, passwords, store keys) out of the process environment
// into this package's memory, where later reads (reloads) find them:
// nothing the agent starts inherits them, and they are no longer in
// os.Environ. It returns the variables it moved. The daemon calls it once
// the configuration has been read successfully.
func HideEnvSecrets(cfg *config.Config) []string {
	var moved []string
	for _, name := range cfg.EnvRefs() {
		if v, set := os.LookupEnv(name); set {
			envSecrets.Store(name, v)
			os.Unsetenv(name)
			moved = append(moved, name)
		}
	}
	return moved
}
