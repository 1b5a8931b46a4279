package secretref

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
)

// RotatingFile is a file: reference whose content a platform replaces
// while the agent runs: a Kubernetes projected service-account token
// (kubelet swaps a ..data symlink), AZURE_FEDERATED_TOKEN_FILE, a SPIFFE
// JWT-SVID. Read re-reads it only when a stat through the symlinks says
// it changed (device, inode, size, modification time), so asking before
// every token request costs one stat. It is safe for concurrent use.
type RotatingFile struct {
	ref, path string

	mu      sync.Mutex
	version fileVersion // of data; zero before the first read
	data    []byte
}

// fileVersion tells one content of a file from the next without reading
// it: what the path resolved to, its size and modification time.
type fileVersion struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func versionOf(fi fs.FileInfo) fileVersion {
	dev, ino := fileID(fi)
	return fileVersion{dev: dev, ino: ino, size: fi.Size(), mtime: fi.ModTime()}
}

// NewRotatingFile is the file ref (file:PATH, a relative path resolved
// against baseDir) names. Nothing is read yet.
func NewRotatingFile(ref, baseDir string) (*RotatingFile, error) {
	path, ok := strings.CutPrefix(ref, config.RefFile)
	if !ok || path == "" {
		return nil, errors.New("use file:PATH: a platform rotates its token in a file")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, path)
	}
	return &RotatingFile{ref: config.RefFile + path, path: path}, nil
}

// String is the reference with its path resolved: "file:/var/run/…".
func (f *RotatingFile) String() string { return f.ref }

// Read returns the file's content: the one read last while a stat finds
// the file unchanged, else (and whenever fresh is set) the file read
// anew, with the checks of a secret (not readable by every user, at most
// 1 MiB). Errors name the file, never its content.
func (f *RotatingFile) Read(fresh bool) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !fresh && f.data != nil {
		if fi, err := os.Stat(f.path); err == nil && versionOf(fi) == f.version {
			return f.data, nil
		}
	}
	data, fi, err := readFileInfo(f.path, Secret)
	if err != nil {
		return nil, err
	}
	// The version is that of the descriptor read: a swap between the
	// stat above and the open shows as a change at the next Read.
	f.data, f.version = data, versionOf(fi)
	return data, nil
}
