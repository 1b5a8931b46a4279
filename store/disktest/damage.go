package disktest

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
)

// Damage is a damaged copy of a bbolt file.
type Damage struct {
	Name string
	Data []byte
}

// Damages are damaged copies of seed, a bbolt file of 4 KiB pages: cut at
// every step bytes (a multiple of 4 KiB), at odd offsets (among them the
// two of issue 23 item 2, scaled to seed's size) and just past the newest
// meta's freelist page, with a branch page made its own child (Cycle),
// and with one byte flipped at each of flips seeded random offsets. The
// same seed gives the same damages.
func Damages(seed []byte, step, flips int) []Damage {
	size := len(seed)
	var ds []Damage
	for n := 0; n < size; n += step {
		ds = append(ds, Damage{fmt.Sprintf("truncated to %d", n), seed[:n]})
	}
	for _, n := range []int{1, 17, 4095, 4097, 8191, 8193, size * 43449 / 131072, size * 46302 / 131072, size - 1} {
		if n < size {
			ds = append(ds, Damage{fmt.Sprintf("truncated to %d (odd)", n), seed[:n]})
		}
	}
	// Cut just past the freelist page of the newest meta: bbolt reads the
	// freelist on Open, then its consistency check (its own goroutine)
	// touches tree pages past the end of the file.
	if size >= 2*4096 {
		newest := 0
		if binary.LittleEndian.Uint64(seed[4096+64:]) > binary.LittleEndian.Uint64(seed[64:]) {
			newest = 4096
		}
		if fl := int(binary.LittleEndian.Uint64(seed[newest+48:])); (fl+1)*4096 < size {
			ds = append(ds, Damage{fmt.Sprintf("truncated after the freelist page, to %d", (fl+1)*4096), seed[:(fl+1)*4096]})
		}
	}
	if c := Cycle(seed); c != nil {
		ds = append(ds, *c)
	}
	rng := mrand.New(mrand.NewPCG(23, 2))
	for range flips {
		data := append([]byte(nil), seed...)
		off := rng.IntN(size)
		data[off] ^= byte(1 + rng.IntN(255))
		ds = append(ds, Damage{fmt.Sprintf("byte %d flipped to %#x", off, data[off]), data})
	}
	return ds
}

// PastTheEnd are copies of seed in which a page number points past the
// file, set to the high-water mark or with bit 20 flipped (4 GiB past
// the end, unmapped): one bucket's root page number, in the newest meta's
// root page (bbolt's check, on its own goroutine, would read the page);
// the newest meta's freelist page number (its checksum recomputed, as a
// fault in memory before bbolt wrote it would leave it); the lowest free
// page id on the freelist (harmless at open: bbolt hands it out later for
// a new page and writes that past the high-water mark). The size still
// matches the meta page. Nil if seed's buckets are all inline.
func PastTheEnd(seed []byte) []Damage {
	le := binary.LittleEndian
	if len(seed) < 2*4096 {
		return nil
	}
	meta := 0
	if le.Uint64(seed[4096+64:]) > le.Uint64(seed[64:]) {
		meta = 4096
	}
	// Meta (after the 16-byte page header): magic, version, page size,
	// flags, root bucket {root page, sequence}, freelist, high-water
	// mark, txid, checksum.
	root := int(le.Uint64(seed[meta+32:]))
	hwm := le.Uint64(seed[meta+56:])
	page := root * 4096
	if page+16 > len(seed) || le.Uint16(seed[page+8:]) != 0x02 { // not a leaf page
		return nil
	}
	var ds []Damage
	for i := range int(le.Uint16(seed[page+10:])) {
		elem := page + 16 + 16*i
		flags, pos, ksize := le.Uint32(seed[elem:]), int(le.Uint32(seed[elem+4:])), int(le.Uint32(seed[elem+8:]))
		if flags&0x01 == 0 { // not a bucket
			continue
		}
		name := seed[elem+pos : elem+pos+ksize]
		value := elem + pos + ksize
		was := le.Uint64(seed[value:])
		if was == 0 { // inline
			continue
		}
		for _, to := range []uint64{hwm, was ^ 1<<20} {
			data := append([]byte(nil), seed...)
			le.PutUint64(data[value:], to)
			ds = append(ds, Damage{fmt.Sprintf("bucket %q's root page %d changed to %d (high-water mark %d)", name, was, to, hwm), data})
		}
	}
	if len(ds) == 0 {
		return nil
	}
	freelist := le.Uint64(seed[meta+48:])
	if freelist >= hwm || int(freelist+1)*4096 > len(seed) {
		return ds // none written (NoFreelistSync)
	}
	for _, to := range []uint64{hwm, freelist ^ 1<<20} {
		data := append([]byte(nil), seed...)
		le.PutUint64(data[meta+48:], to)
		sumMeta(data[meta:])
		ds = append(ds, Damage{fmt.Sprintf("the meta's freelist page %d changed to %d, checksum recomputed (high-water mark %d)", freelist, to, hwm), data})
	}
	page = int(freelist) * 4096
	ids, count := page+16, int(le.Uint16(seed[page+10:]))
	if count == 0xFFFF {
		count = int(le.Uint64(seed[ids:]))
		ids += 8
	}
	if count > 0 {
		lowest := ids // bbolt hands out the lowest free id first
		for i := range count {
			if le.Uint64(seed[ids+8*i:]) < le.Uint64(seed[lowest:]) {
				lowest = ids + 8*i
			}
		}
		was := le.Uint64(seed[lowest:])
		for _, to := range []uint64{hwm, was ^ 1<<20} {
			data := append([]byte(nil), seed...)
			le.PutUint64(data[lowest:], to)
			ds = append(ds, Damage{fmt.Sprintf("free page %d on freelist page %d changed to %d (high-water mark %d)", was, freelist, to, hwm), data})
		}
	}
	// One more id than the page held, past the end: no page goes
	// missing, so bbolt's check has nothing to say.
	if count < 0xFFFE && ids+8*(count+1) <= page+4096 {
		for _, to := range []uint64{hwm, hwm ^ 1<<20} {
			data := append([]byte(nil), seed...)
			le.PutUint16(data[page+10:], uint16(count+1))
			le.PutUint64(data[ids+8*count:], to)
			ds = append(ds, Damage{fmt.Sprintf("free page %d added to freelist page %d (high-water mark %d)", to, freelist, hwm), data})
		}
	}
	return ds
}

// sumMeta recomputes the checksum of the meta page at m.
func sumMeta(m []byte) {
	h := fnv.New64a()
	h.Write(m[16 : 16+56])
	binary.LittleEndian.PutUint64(m[16+56:], h.Sum64())
}

// Cycle is a copy of seed in which the first child of one bucket's root
// branch page (in the newest meta's root page) is that branch page
// itself: a walk that follows page numbers without remembering them goes
// round for ever. Nil if no bucket's root is a branch page.
func Cycle(seed []byte) *Damage {
	le := binary.LittleEndian
	if len(seed) < 2*4096 {
		return nil
	}
	meta := 0
	if le.Uint64(seed[4096+64:]) > le.Uint64(seed[64:]) {
		meta = 4096
	}
	page := int(le.Uint64(seed[meta+32:])) * 4096
	if page+16 > len(seed) || le.Uint16(seed[page+8:]) != 0x02 {
		return nil
	}
	for i := range int(le.Uint16(seed[page+10:])) {
		elem := page + 16 + 16*i
		flags, pos, ksize := le.Uint32(seed[elem:]), int(le.Uint32(seed[elem+4:])), int(le.Uint32(seed[elem+8:]))
		root := le.Uint64(seed[elem+pos+ksize:])
		if flags&0x01 == 0 || root == 0 || int(root+1)*4096 > len(seed) {
			continue
		}
		branch := int(root) * 4096
		if le.Uint16(seed[branch+8:]) != 0x01 || le.Uint16(seed[branch+10:]) == 0 {
			continue
		}
		data := append([]byte(nil), seed...)
		le.PutUint64(data[branch+16+8:], root) // branch element: pos, ksize, pgid
		return &Damage{fmt.Sprintf("bucket %q's root branch page %d made its own first child", seed[elem+pos:elem+pos+ksize], root), data}
	}
	return nil
}
