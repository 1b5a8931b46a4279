package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk meta page: a 16-byte page header, then magic, version,
// page size, flags, root bucket (root, sequence), freelist, pgid (the
// high-water mark), txid and an FNV-1a 64 checksum of what precedes it.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltMetaSize   = 64
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

// parseBoltMeta reads the meta at b (page header included) and says
// whether it is valid as bbolt would judge it.
func parseBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// checkBoltSize refuses, before bbolt maps the file, a file with no valid
// meta page or shorter than the newest valid meta's high-water mark:
// bbolt would map pages past the end of the file, and touching them is a
// SIGBUS that no recover catches when it happens in bbolt's own
// goroutines (its consistency check).
func checkBoltSize(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // bolt.Open reports it, as before
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	size := fi.Size()
	first := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := io.ReadFull(f, first); err != nil {
		return fmt.Errorf("file is %d bytes, too short for a database", size)
	}
	var metas []boltMeta
	offsets := []int64{int64(os.Getpagesize()), 4096}
	if m, ok := parseBoltMeta(first); ok {
		metas = append(metas, m)
		offsets = []int64{int64(m.pageSize)}
	}
	for _, off := range offsets {
		b := make([]byte, boltPageHeader+boltMetaSize)
		if _, err := f.ReadAt(b, off); err != nil {
			continue
		}
		if m, ok := parseBoltMeta(b); ok {
			metas = append(metas, m)
			break
		}
	}
	if len(metas) == 0 {
		return errors.New("no valid meta page (not a database, or both meta pages damaged)")
	}
	newest := metas[0]
	for _, m := range metas[1:] {
		if m.txid > newest.txid {
			newest = m
		}
	}
	if newest.pageSize < 512 || newest.pageSize > 1<<20 {
		return fmt.Errorf("meta page gives an implausible page size %d", newest.pageSize)
	}
	if need := newest.pgid * uint64(newest.pageSize); need/uint64(newest.pageSize) != newest.pgid || uint64(size) < need {
		return fmt.Errorf("file is %d bytes, shorter than the %d pages × %d bytes its meta page records (truncated)", size, newest.pgid, newest.pageSize)
	}
	return nil
}
