package attribution

import (
	"math"
	"reflect"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// The index's entries hold no pointer (the collector skips its maps) and
// stay 24 bytes.
func TestIndexEntryIsCompact(t *testing.T) {
	typ := reflect.TypeFor[indexEntry]()
	for i := 0; i < typ.NumField(); i++ {
		switch k := typ.Field(i).Type.Kind(); k {
		case reflect.Int32, reflect.Int64, reflect.Uint64:
		default:
			t.Errorf("indexEntry.%s is a %s", typ.Field(i).Name, k)
		}
	}
	if n := unsafe.Sizeof(indexEntry{}); n != 24 {
		t.Errorf("indexEntry takes %d bytes, want 24", n)
	}
}

func TestNewIndexEntry(t *testing.T) {
	e, ok := newIndexEntry(4194304, 1<<20, 77, 5)
	if !ok || e.pid != 4194304 || e.fd != 1<<20 || e.start != 77 || e.seen != 5 {
		t.Fatalf("newIndexEntry = %+v, %v", e, ok)
	}
	for _, c := range [][2]int{{math.MaxInt32 + 1, 3}, {1, math.MaxInt32 + 1}, {1, math.MinInt32 - 1}} {
		if _, ok := newIndexEntry(c[0], c[1], 0, 0); ok {
			t.Errorf("newIndexEntry(pid %d, fd %d) kept", c[0], c[1])
		}
	}
}

// monoNanos orders times as time.Time does, on the monotonic clock.
func TestMonoNanos(t *testing.T) {
	a := time.Now()
	b := a.Add(time.Nanosecond)
	if monoNanos(b)-monoNanos(a) != 1 {
		t.Fatalf("a nanosecond apart: %d, %d", monoNanos(a), monoNanos(b))
	}
	if n := monoNow(); n < monoNanos(a) {
		t.Fatalf("monoNow %d before an earlier time.Now %d", n, monoNanos(a))
	}
}

// oldIndexEntry is the entry before it was compacted, for comparison.
type oldIndexEntry struct {
	pid   int
	fd    int
	start uint64
	seen  time.Time
}

// BenchmarkIndexFull fills an index of the default size (both generations
// full) and reports the heap it holds and what a collection takes with it.
func BenchmarkIndexFull(b *testing.B) {
	b.Run("time.Time", func(b *testing.B) { benchIndexFull(b, func() oldIndexEntry { return oldIndexEntry{seen: time.Now()} }) })
	b.Run("compact", func(b *testing.B) { benchIndexFull(b, func() indexEntry { return indexEntry{seen: monoNow()} }) })
}

func benchIndexFull[V any](b *testing.B, mk func() V) {
	size := indexBenchSize
	var live uint64
	var gc time.Duration
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		c := newGenCache[uint64, V](size)
		for i := 0; i < 2*size-1; i++ {
			c.put(uint64(i)*0x9E3779B97F4A7C15, mk())
		}
		runtime.GC()
		start := time.Now()
		runtime.GC()
		gc += time.Since(start)
		runtime.ReadMemStats(&m1)
		live += m1.HeapAlloc - m0.HeapAlloc
		runtime.KeepAlive(c)
	}
	b.ReportMetric(float64(live)/float64(b.N), "heap-B")
	b.ReportMetric(float64(gc.Nanoseconds())/float64(b.N), "gc-ns")
}

// indexBenchSize is the generation size BenchmarkIndexFull fills: the
// default Options.IndexSize.
var indexBenchSize = 16384
