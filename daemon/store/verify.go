package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt trusts the pages it maps: a damaged page can make it panic (which
// guarded recovers), read past the end of the file (a fault, also recovered),
// or follow a page reference in a cycle, which recurses until the Go stack
// overflows, a crash no recover catches. So before bbolt walks a file that
// Tollgate did not just create, checkFile walks it first, with plain reads,
// and refuses anything bbolt could trip over: every page reachable from the
// current meta page is inside the file, referenced once, of the right type,
// and its elements, keys and values lie inside it; the freelist names only
// pages that exist and are not in use.
//
// The on-disk format (go.etcd.io/bbolt v1.5.0, internal/common), in the byte
// order of the machine that wrote it:
//
//	page header (16 bytes): id u64, flags u16, count u16, overflow u32
//	meta (after the header): magic u32, version u32, pageSize u32, flags u32,
//	  root bucket {root pgid u64, sequence u64}, freelist pgid u64,
//	  pgid (high water mark) u64, txid u64, checksum u64 (FNV-64a of the 56 bytes before it)
//	branch element (16): pos u32, ksize u32, pgid u64; key at element+pos
//	leaf element (16): flags u32, pos u32, ksize u32, vsize u32; key at element+pos, value after it
//	bucket value: {root pgid u64, sequence u64}, followed by an inline leaf page when root is 0
//	freelist page: count page ids after the header; count 0xFFFF means the first u64 holds the count
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16
	elementSize      = 16
	metaChecksummed  = 56
	bucketHeaderSize = 16

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagFreelist = 0x10

	leafFlagBucket = 0x01

	noFreelist = ^uint64(0)

	// maxTreeDepth bounds the recursion: a B+tree of bbolt pages this deep
	// would hold far more than any disk.
	maxTreeDepth = 64
)

var ne = binary.NativeEndian

type boltMeta struct {
	pageSize, root, freelist, hwm, txid uint64
}

// checkPath runs checkFile on the file at path.
func checkPath(path string, pageSize int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	return checkFile(f, info.Size(), pageSize)
}

// checkFile checks the structure of a bbolt file of size bytes whose page size
// is pageSize (as bbolt determined it). It never panics.
func checkFile(r io.ReaderAt, size int64, pageSize int) error {
	if pageSize < 512 || pageSize > 1<<24 {
		return fmt.Errorf("page size %d out of range", pageSize)
	}
	if size < 2*int64(pageSize) {
		return fmt.Errorf("file of %d bytes is shorter than two pages", size)
	}
	c := &checker{
		r:        r,
		pageSize: uint64(pageSize),
		pages:    uint64(size) / uint64(pageSize),
		used:     make(map[uint64]pageUse),
		free:     make(map[uint64]bool),
	}
	m, err := c.currentMeta()
	if err != nil {
		return err
	}
	c.hwm = m.hwm
	if m.freelist != noFreelist {
		if err := c.checkFreelist(m.freelist); err != nil {
			return fmt.Errorf("freelist: %w", err)
		}
	}
	if err := c.checkTree(m.root, 0); err != nil {
		return fmt.Errorf("root bucket: %w", err)
	}
	for id := range c.free {
		// Like bbolt's own Tx.Check, only tree pages count: the freelist
		// page may list itself while a commit rewrites it.
		if c.used[id] == usedByTree {
			return fmt.Errorf("page %d is both free and in use", id)
		}
	}
	return nil
}

type pageUse uint8

const (
	unused pageUse = iota
	usedByTree
	usedByFreelist
)

type checker struct {
	r        io.ReaderAt
	pageSize uint64
	pages    uint64 // whole pages in the file
	hwm      uint64 // pages allocated, from the meta
	used     map[uint64]pageUse
	free     map[uint64]bool
	bufs     [][]byte // page buffers by tree depth
}

// currentMeta picks the meta page bbolt will use: the valid one with the
// higher transaction id.
func (c *checker) currentMeta() (boltMeta, error) {
	m0, err0 := c.readMeta(0)
	m1, err1 := c.readMeta(1)
	a, b, errA, errB := m0, m1, err0, err1
	if m1.txid > m0.txid {
		a, b, errA, errB = m1, m0, err1, err0
	}
	var m boltMeta
	switch {
	case errA == nil:
		m = a
	case errB == nil:
		m = b
	default:
		return boltMeta{}, fmt.Errorf("meta pages: %w; %w", err0, err1)
	}
	if m.pageSize != c.pageSize {
		return boltMeta{}, fmt.Errorf("meta page says page size %d, file was mapped with %d", m.pageSize, c.pageSize)
	}
	if m.hwm < 4 {
		return boltMeta{}, fmt.Errorf("high water mark %d below the four pages of an empty file", m.hwm)
	}
	return m, nil
}

func (c *checker) readMeta(id uint64) (boltMeta, error) {
	var buf [pageHeaderSize + metaChecksummed + 8]byte
	if _, err := c.r.ReadAt(buf[:], int64(id*c.pageSize)); err != nil {
		return boltMeta{}, fmt.Errorf("read meta page %d: %w", id, err)
	}
	mb := buf[pageHeaderSize:]
	m := boltMeta{
		pageSize: uint64(ne.Uint32(mb[8:])),
		root:     ne.Uint64(mb[16:]),
		freelist: ne.Uint64(mb[32:]),
		hwm:      ne.Uint64(mb[40:]),
		txid:     ne.Uint64(mb[48:]),
	}
	switch {
	case ne.Uint32(mb[0:]) != boltMagic:
		return m, fmt.Errorf("meta page %d: bad magic", id)
	case ne.Uint32(mb[4:]) != boltVersion:
		return m, fmt.Errorf("meta page %d: format version %d", id, ne.Uint32(mb[4:]))
	case ne.Uint64(mb[metaChecksummed:]) != fnvSum(mb[:metaChecksummed]):
		return m, fmt.Errorf("meta page %d: checksum mismatch", id)
	}
	return m, nil
}

func fnvSum(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// readPage reads page id with its overflow pages into the buffer for depth
// (a page's buffer must outlive the walk of its children, which use the
// next depth), checks its header and marks its pages used, refusing a page
// met twice.
func (c *checker) readPage(id uint64, use pageUse, depth int) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page id %d outside [2, %d)", id, c.hwm)
	}
	if id >= c.pages {
		return nil, fmt.Errorf("page %d is past the end of the file (%d pages)", id, c.pages)
	}
	for len(c.bufs) <= depth {
		c.bufs = append(c.bufs, make([]byte, c.pageSize))
	}
	p := c.bufs[depth][:c.pageSize]
	if _, err := c.r.ReadAt(p, int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, err)
	}
	if got := ne.Uint64(p[0:]); got != id {
		return nil, fmt.Errorf("page %d identifies itself as %d", id, got)
	}
	overflow := uint64(ne.Uint32(p[12:]))
	if overflow >= c.pages-id || overflow >= c.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the end", id, overflow)
	}
	for i := id; i <= id+overflow; i++ {
		if c.used[i] != unused {
			return nil, fmt.Errorf("page %d is referenced twice", i)
		}
		c.used[i] = use
	}
	if overflow > 0 {
		size := (1 + overflow) * c.pageSize
		if uint64(cap(c.bufs[depth])) < size {
			c.bufs[depth] = append(make([]byte, 0, size), p...)
		}
		p = c.bufs[depth][:size]
		if _, err := c.r.ReadAt(p[c.pageSize:], int64((id+1)*c.pageSize)); err != nil {
			return nil, fmt.Errorf("read page %d: %w", id, err)
		}
	}
	return p, nil
}

func (c *checker) checkFreelist(id uint64) error {
	p, err := c.readPage(id, usedByFreelist, 0)
	if err != nil {
		return err
	}
	if flags := ne.Uint16(p[8:]); flags != flagFreelist {
		return fmt.Errorf("page %d has flags %#x, want a freelist page", id, flags)
	}
	first, count := uint64(0), uint64(ne.Uint16(p[10:]))
	if count == 0xFFFF {
		if len(p) < pageHeaderSize+8 {
			return fmt.Errorf("page %d too short for its count", id)
		}
		first, count = 1, ne.Uint64(p[pageHeaderSize:])
	}
	room := uint64(len(p)-pageHeaderSize) / 8
	if count > room-first {
		return fmt.Errorf("page %d lists %d free pages but holds %d", id, count, room-first)
	}
	for i := range count {
		free := ne.Uint64(p[pageHeaderSize+(first+i)*8:])
		if free < 2 || free >= c.hwm {
			return fmt.Errorf("free page id %d outside [2, %d)", free, c.hwm)
		}
		if c.free[free] {
			return fmt.Errorf("page %d freed twice", free)
		}
		c.free[free] = true
	}
	return nil
}

// checkTree checks the B+tree whose root is page id.
func (c *checker) checkTree(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("tree deeper than %d pages", maxTreeDepth)
	}
	p, err := c.readPage(id, usedByTree, depth)
	if err != nil {
		return err
	}
	switch flags := ne.Uint16(p[8:]); flags {
	case flagBranch:
		return c.checkBranch(id, p, depth)
	case flagLeaf:
		return c.checkLeaf(fmt.Sprintf("page %d", id), p, depth, false)
	default:
		return fmt.Errorf("page %d has flags %#x, want a branch or leaf page", id, flags)
	}
}

func elementCount(p []byte) (uint64, error) {
	n := uint64(ne.Uint16(p[10:]))
	if n > uint64(len(p)-pageHeaderSize)/elementSize {
		return 0, fmt.Errorf("%d elements do not fit in %d bytes", n, len(p))
	}
	return n, nil
}

// span returns p[off+pos : off+pos+n], or an error when it is not inside p.
func span(p []byte, off, pos, n uint64) ([]byte, error) {
	start := off + pos
	if start < off || start+n < start || start+n > uint64(len(p)) {
		return nil, errors.New("element data lies outside its page")
	}
	return p[start : start+n], nil
}

func (c *checker) checkBranch(id uint64, p []byte, depth int) error {
	n, err := elementCount(p)
	if err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("branch page %d has no elements", id)
	}
	var prev []byte
	for i := range n {
		off := pageHeaderSize + i*elementSize
		key, err := span(p, off, uint64(ne.Uint32(p[off:])), uint64(ne.Uint32(p[off+4:])))
		if err != nil {
			return fmt.Errorf("page %d element %d: %w", id, i, err)
		}
		if err := keyOrder(prev, key); err != nil {
			return fmt.Errorf("page %d element %d: %w", id, i, err)
		}
		prev = key
		if err := c.checkTree(ne.Uint64(p[off+8:]), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// checkLeaf checks a leaf page (a real one, or the inline page in a small
// bucket's value) and the buckets its elements hold.
func (c *checker) checkLeaf(where string, p []byte, depth int, inline bool) error {
	n, err := elementCount(p)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var prev []byte
	for i := range n {
		off := pageHeaderSize + i*elementSize
		flags := ne.Uint32(p[off:])
		pos, ksize, vsize := uint64(ne.Uint32(p[off+4:])), uint64(ne.Uint32(p[off+8:])), uint64(ne.Uint32(p[off+12:]))
		kv, err := span(p, off, pos, ksize+vsize)
		if err != nil {
			return fmt.Errorf("%s element %d: %w", where, i, err)
		}
		key, value := kv[:ksize], kv[ksize:]
		if err := keyOrder(prev, key); err != nil {
			return fmt.Errorf("%s element %d: %w", where, i, err)
		}
		prev = key
		switch flags {
		case 0:
		case leafFlagBucket:
			if inline {
				return fmt.Errorf("%s element %d: a bucket inside an inline bucket", where, i)
			}
			if err := c.checkBucket(key, value, depth); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s element %d: unknown flags %#x", where, i, flags)
		}
	}
	return nil
}

func (c *checker) checkBucket(name, v []byte, depth int) error {
	if len(v) < bucketHeaderSize {
		return fmt.Errorf("bucket %q: header of %d bytes", name, len(v))
	}
	root := ne.Uint64(v)
	if root != 0 {
		if err := c.checkTree(root, depth+1); err != nil {
			return fmt.Errorf("bucket %q: %w", name, err)
		}
		return nil
	}
	page := v[bucketHeaderSize:]
	if len(page) < pageHeaderSize {
		return fmt.Errorf("bucket %q: inline page of %d bytes", name, len(page))
	}
	if flags := ne.Uint16(page[8:]); flags != flagLeaf {
		return fmt.Errorf("bucket %q: inline page has flags %#x, want a leaf", name, flags)
	}
	return c.checkLeaf(fmt.Sprintf("bucket %q inline page", name), page, depth, true)
}

// keyOrder requires keys to be non-empty and strictly ascending within a page,
// as bbolt's binary search and node code assume.
func keyOrder(prev, key []byte) error {
	if len(key) == 0 {
		return errors.New("empty key")
	}
	if prev != nil && bytes.Compare(prev, key) >= 0 {
		return fmt.Errorf("key %q not after %q", key, prev)
	}
	return nil
}
