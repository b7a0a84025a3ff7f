package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tollgate-fw/tollgate/shared"
)

// validImage returns the bytes of a healthy store with rules (enough for
// branch pages), deleted rules (so the freelist has entries) and a log.
func validImage(t testing.TB) []byte {
	return buildImage(t, 300, 40)
}

func buildImage(t testing.TB, nRules, nLog int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.db")
	s, err := Open(Options{Path: path, MaxLogEntries: nLog}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := make([]shared.Rule, nRules)
	for i := range rs {
		rs[i] = smallRule(fmt.Sprintf("rule-%05d", i))
	}
	if err := s.PutRules(rs); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < nRules && i < 100; i += 10 { // a few deletions: freelist entries
		if err := s.DeleteRule(rs[i].ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendLog(entries(1, nLog)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckFileAcceptsHealthyFiles(t *testing.T) {
	for _, n := range []int{0, 1, 300, 3000} {
		img := buildImage(t, n, n/3)
		if err := checkFile(bytes.NewReader(img), int64(len(img)), os.Getpagesize()); err != nil {
			t.Errorf("%d rules: checkFile: %v", n, err)
		}
	}
	// Files of other programs' shapes: nested buckets, inline buckets,
	// no freelist, big values on overflow pages.
	path := dbPath(t)
	rawUpdate(t, path, &bbolt.Options{NoFreelistSync: true}, func(tx *bbolt.Tx) error {
		a, err := tx.CreateBucket([]byte("a"))
		if err != nil {
			return err
		}
		for i := range 50 {
			nb, err := a.CreateBucket([]byte{byte(i)})
			if err != nil {
				return err
			}
			if err := nb.Put([]byte("k"), bytes.Repeat([]byte{byte(i)}, i*500)); err != nil {
				return err
			}
		}
		return a.Put([]byte("big"), make([]byte, 5*os.Getpagesize()))
	})
	if err := checkPath(path, os.Getpagesize()); err != nil {
		t.Errorf("nested buckets: %v", err)
	}
}

// page layout helpers for the damage below.
func pageOff(id uint64) int { return int(id) * os.Getpagesize() }

func bucketRoot(t *testing.T, path string, name []byte) uint64 {
	var root uint64
	rawView(t, path, func(tx *bbolt.Tx) error {
		root = uint64(tx.Bucket(name).Root())
		return nil
	})
	if root == 0 {
		t.Fatalf("bucket %q is inline", name)
	}
	return root
}

// currentMetaOff returns the file offset of the meta (after the page header)
// bbolt uses.
func currentMetaOff(t *testing.T, img []byte) int {
	c := &checker{r: bytes.NewReader(img), pageSize: uint64(os.Getpagesize()), pages: uint64(len(img) / os.Getpagesize())}
	m0, err0 := c.readMeta(0)
	m1, err1 := c.readMeta(1)
	if err0 != nil || err1 != nil {
		t.Fatal(err0, err1)
	}
	if m1.txid > m0.txid {
		return pageOff(1) + pageHeaderSize
	}
	return pageHeaderSize
}

// rechecksum fixes the checksum of the meta at off after an edit.
func rechecksum(img []byte, off int) {
	h := fnvSum(img[off : off+metaChecksummed])
	ne.PutUint64(img[off+metaChecksummed:], h)
}

func TestDamagedPagesAreCorruptAndUntouched(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.db")
	if err := os.WriteFile(base, validImage(t), 0o600); err != nil {
		t.Fatal(err)
	}
	rulesRoot := bucketRoot(t, base, bucketRules)
	img, _ := os.ReadFile(base)
	if ne.Uint16(img[pageOff(rulesRoot)+8:]) != flagBranch {
		t.Fatalf("rules root page %d is not a branch page; make more rules", rulesRoot)
	}
	branchElem := func(i int) int { return pageOff(rulesRoot) + pageHeaderSize + i*elementSize }
	child0 := ne.Uint64(img[branchElem(0)+8:])
	metaOff := currentMetaOff(t, img)
	freelist := ne.Uint64(img[metaOff+32:])
	if freelist == noFreelist || ne.Uint16(img[pageOff(freelist)+10:]) == 0 {
		t.Fatal("test image has an empty freelist")
	}

	cases := map[string]func(img []byte){
		// Without checkFile, this one crashes the process: bbolt's cursor
		// recurses into the cycle until the Go stack overflows.
		"branch points at itself": func(img []byte) { ne.PutUint64(img[branchElem(0)+8:], rulesRoot) },
		"two branch elements share a child": func(img []byte) {
			ne.PutUint64(img[branchElem(1)+8:], child0)
		},
		"child past end of file": func(img []byte) {
			ne.PutUint64(img[branchElem(0)+8:], uint64(len(img)/os.Getpagesize())+3)
		},
		"child is a meta page": func(img []byte) { ne.PutUint64(img[branchElem(0)+8:], 1) },
		"page says it is another page": func(img []byte) {
			ne.PutUint64(img[pageOff(child0):], child0+1)
		},
		"page of unknown type": func(img []byte) { ne.PutUint16(img[pageOff(child0)+8:], 0x40) },
		"element count past the page": func(img []byte) {
			ne.PutUint16(img[pageOff(child0)+10:], 0xFFF0)
		},
		"leaf key outside the page": func(img []byte) {
			ne.PutUint32(img[pageOff(child0)+pageHeaderSize+4:], 1<<30)
		},
		"overflow past the end": func(img []byte) {
			ne.PutUint32(img[pageOff(child0)+12:], 1<<20)
		},
		"freelist frees a page in use": func(img []byte) {
			ne.PutUint64(img[pageOff(freelist)+pageHeaderSize:], child0)
		},
		"freelist count too big": func(img []byte) {
			ne.PutUint16(img[pageOff(freelist)+10:], 0xFFFF)
			ne.PutUint64(img[pageOff(freelist)+pageHeaderSize:], 1<<40)
		},
		"root bucket past the high water mark": func(img []byte) {
			ne.PutUint64(img[metaOff+16:], 1<<40)
			rechecksum(img, metaOff)
		},
		"high water mark below the pages": func(img []byte) {
			ne.PutUint64(img[metaOff+40:], 3)
			rechecksum(img, metaOff)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			img := bytes.Clone(img)
			damage(img)
			if err := checkFile(bytes.NewReader(img), int64(len(img)), os.Getpagesize()); err == nil {
				t.Fatal("checkFile accepted the damage")
			} else {
				t.Logf("checkFile: %v", err)
			}
			path := dbPath(t)
			if err := os.WriteFile(path, img, 0o600); err != nil {
				t.Fatal(err)
			}
			expectRefused(t, path, ErrCorrupt)
		})
	}
}

// FuzzOpen feeds arbitrary bytes to Open as a database file. Nothing may
// panic or crash; a refused file must be left exactly as it was; an accepted
// one must survive every operation.
func FuzzOpen(f *testing.F) {
	img := validImage(f)
	f.Add(img)
	f.Add(buildImage(f, 0, 0))
	f.Add(buildImage(f, 2, 2))
	f.Add([]byte{})
	f.Add([]byte("not a database"))
	f.Add(img[:2*os.Getpagesize()])
	half := bytes.Clone(img)
	clear(half[len(half)/2:])
	f.Add(half)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := open(Options{Path: path, LockTimeout: time.Second, MaxLogEntries: 20}, nil,
			internalOptions{schema: tollgateSchema, noSync: true})
		if err != nil {
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrForeign) || errors.Is(err, ErrTooNew) {
				after, rerr := os.ReadFile(path)
				if rerr != nil {
					t.Fatal(rerr)
				}
				if !bytes.Equal(after, data) {
					t.Fatalf("refused file was changed (%v)", err)
				}
			}
			return
		}
		defer s.Close()
		_, _, _ = s.Rules()
		_, _ = s.Log(LogFilter{Limit: 5})
		_ = s.PutRule(smallRule("fuzz"))
		_ = s.UpdateHits(map[string]Hit{"rule-00001": {Count: 1}, "fuzz": {Count: 1}})
		_ = s.AppendLog(entries(1000, 30))
		_ = s.DeleteRule("rule-00002")
		_, _, _ = s.Rules()
	})
}

// FuzzCheckFile runs the structure check alone on arbitrary bytes.
func FuzzCheckFile(f *testing.F) {
	f.Add(validImage(f))
	f.Add(buildImage(f, 0, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = checkFile(bytes.NewReader(data), int64(len(data)), 4096)
		_ = checkFile(bytes.NewReader(data), int64(len(data)), 1024)
	})
}
