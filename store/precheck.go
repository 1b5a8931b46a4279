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
	root     uint64 // the root bucket's page
	freelist uint64 // the freelist's page, or boltNoFreelist
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
	return boltMeta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
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
	return checkBoltTree(f, newest)
}

// checkBoltTree follows the newest meta's freelist and tree over a copy of
// the file in memory, where a page number or an offset past the end is an
// error, not a fault, and a page reached twice (a branch leading back to
// an ancestor) ends the walk. bbolt's check follows the same numbers
// through the map on a goroutine of its own, where a fault kills the
// process (a bucket's root page number with one bit flipped did, at every
// start) and a cycle recurses without end; the agent later reads keys and
// values through the map wherever it runs.
func checkBoltTree(f *os.File, m boltMeta) error {
	data := make([]byte, m.pgid*uint64(m.pageSize))
	if _, err := f.ReadAt(data, 0); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	w := treeWalk{data: data, pageSize: uint64(m.pageSize), seen: map[uint64]bool{}}
	if m.freelist != boltNoFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return err
		}
	}
	p, err := w.page(m.root)
	if err != nil {
		return err
	}
	return w.node(p)
}

// treeWalk visits bbolt's pages as its check does: branch children,
// bucket roots (or inline buckets) in leaf values.
type treeWalk struct {
	data     []byte
	pageSize uint64
	seen     map[uint64]bool
}

const (
	boltBranchPage = 0x01
	boltLeafPage   = 0x02
	boltBucketLeaf = 0x01
	boltElemSize   = 16

	boltFreelistPage = 0x10
	boltNoFreelist   = 0xFFFFFFFFFFFFFFFF // a meta written with NoFreelistSync
)

// freelist checks the freelist page id and the free page ids on it.
// bbolt reads them when it opens the file for writing (on the caller's
// goroutine, where a fault is recovered), but hands a free page id out
// for a new page without a bound check: one past the end is written
// past the high-water mark, the tree then leads there, and the next
// read through the map faults wherever it runs, or the page is handed
// out twice. bbolt's check compares free ids only with the pages it
// reaches, so it does not see one past the end. A meta without a
// freelist (written with NoFreelistSync) makes bbolt rebuild it by
// walking the tree on a goroutine of its own: the tree walk covers it.
func (w *treeWalk) freelist(id uint64) error {
	p, err := w.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	le := binary.LittleEndian
	if flags := le.Uint16(p[8:]); flags != boltFreelistPage {
		return fmt.Errorf("freelist page %d has type %#x, not a freelist", id, flags)
	}
	ids, count := p[boltPageHeader:], uint64(le.Uint16(p[10:]))
	if count == 0xFFFF { // too many for the header: the first element holds the count
		count = le.Uint64(ids)
		ids = ids[8:]
	}
	if count > uint64(len(ids))/8 {
		return fmt.Errorf("freelist page %d's %d page ids run past its end", id, count)
	}
	pages := uint64(len(w.data)) / w.pageSize
	for i := range count {
		if free := le.Uint64(ids[8*i:]); free < 2 || free >= pages {
			return fmt.Errorf("freelist page %d: free page %d is outside the database's pages 2 to %d", id, free, pages-1)
		}
	}
	return nil
}

// page returns page id with its overflow pages, each reached only once.
func (w *treeWalk) page(id uint64) ([]byte, error) {
	n := uint64(len(w.data)) / w.pageSize
	if id < 2 || id >= n {
		return nil, fmt.Errorf("page number %d is outside the database's pages 2 to %d", id, n-1)
	}
	if w.seen[id] {
		return nil, fmt.Errorf("page %d is reached twice", id)
	}
	w.seen[id] = true
	off := id * w.pageSize
	overflow := uint64(binary.LittleEndian.Uint32(w.data[off+12:]))
	if overflow >= n-id {
		return nil, fmt.Errorf("page %d's %d overflow pages run past the database's end", id, overflow)
	}
	return w.data[off : off+(1+overflow)*w.pageSize], nil
}

// node checks the elements of a branch or leaf page p (a page, or an
// inline bucket's) and what they lead to.
func (w *treeWalk) node(p []byte) error {
	le := binary.LittleEndian
	if len(p) < boltPageHeader {
		return errors.New("an inline bucket is shorter than a page header")
	}
	flags, count := le.Uint16(p[8:]), uint64(le.Uint16(p[10:]))
	if boltPageHeader+count*boltElemSize > uint64(len(p)) {
		return fmt.Errorf("page %d's %d elements run past its end", le.Uint64(p), count)
	}
	for i := range count {
		at := boltPageHeader + i*boltElemSize
		e := p[at:]
		switch flags {
		case boltBranchPage:
			if at+uint64(le.Uint32(e[0:]))+uint64(le.Uint32(e[4:])) > uint64(len(p)) {
				return fmt.Errorf("page %d: key %d runs past the page", le.Uint64(p), i)
			}
			child, err := w.page(le.Uint64(e[8:]))
			if err != nil {
				return err
			}
			if err := w.node(child); err != nil {
				return err
			}
		case boltLeafPage:
			start := at + uint64(le.Uint32(e[4:])) + uint64(le.Uint32(e[8:]))
			end := start + uint64(le.Uint32(e[12:]))
			if end > uint64(len(p)) {
				return fmt.Errorf("page %d: element %d runs past the page", le.Uint64(p), i)
			}
			if le.Uint32(e[0:])&boltBucketLeaf == 0 {
				continue
			}
			if end-start < 16 {
				return fmt.Errorf("page %d: bucket %d's header is short", le.Uint64(p), i)
			}
			var child []byte
			var err error
			if root := le.Uint64(p[start:]); root == 0 {
				child = p[start+16 : end] // an inline bucket
			} else if child, err = w.page(root); err != nil {
				return err
			}
			if err := w.node(child); err != nil {
				return err
			}
		default:
			return fmt.Errorf("page %d has type %#x, not a branch or leaf", le.Uint64(p), flags)
		}
	}
	return nil
}
