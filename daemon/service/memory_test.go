package service

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
	"time"
)

func TestMemoryLimitFor(t *testing.T) {
	for _, tt := range []struct {
		live, other uint64
		want        int64
	}{
		{0, 0, memLimitFloor},
		{10 << 20, 4 << 20, memLimitFloor},
		{20 << 20, 6 << 20, 42 << 20},   // headroom 16 MiB
		{100 << 20, 6 << 20, 156 << 20}, // half the live heap
	} {
		if got := memoryLimitFor(tt.live, tt.other); got != tt.want {
			t.Errorf("memoryLimitFor(%d MiB) = %d MiB, want %d MiB", tt.live>>20, got>>20, tt.want>>20)
		}
	}
}

func TestTuneMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOMEMLIMIT", "")
	newMemTuner(log).tune(time.Now())
	if got := debug.SetMemoryLimit(-1); got < memLimitFloor || got == math.MaxInt64 {
		t.Errorf("limit %d, want at least the floor", got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "1GiB")
	newMemTuner(log).tune(time.Now())
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT set, yet the limit became %d", got)
	}
}

// TestMemTuner drives the tuner with made-up readings: it follows the live
// heap after collections, leaves the limit alone while nothing was
// collected, lifts it for liftFor when the collector's share of the CPU
// passes gcShareMax, and sets it again afterwards.
func TestMemTuner(t *testing.T) {
	var sample memSample
	limit := int64(math.MaxInt64)
	sets := 0
	tu := &memTuner{
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		read: func() (memSample, bool) { return sample, true },
		set:  func(l int64) int64 { old := limit; limit = l; sets++; return old },
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := func(d time.Duration, live uint64, cycles uint64, gc, all float64) {
		sample.live, sample.other = live, 4<<20
		sample.cycles += cycles
		sample.gcCPU += gc
		sample.busyCPU += all
		t0 = t0.Add(d)
		tu.tune(t0)
	}
	step(0, 30<<20, 1, 0, 0)
	if want := memoryLimitFor(30<<20, 4<<20); limit != want {
		t.Fatalf("first tune: limit %d, want %d", limit, want)
	}
	n := sets
	step(time.Second, 60<<20, 0, 0, 1) // no collection: nothing to learn
	if sets != n {
		t.Error("tuned without a collection since the last tune")
	}
	step(time.Second, 60<<20, 3, 0.05, 1) // the heap grew; collector at 5%
	if want := memoryLimitFor(60<<20, 4<<20); limit != want {
		t.Errorf("after growth: limit %d, want %d", limit, want)
	}
	step(time.Second, 60<<20, 20, 0.3, 1) // collector at 30%: lift
	if limit != math.MaxInt64 {
		t.Fatalf("collector at 30%%: limit %d, want lifted", limit)
	}
	step(liftFor/2, 40<<20, 2, 0.01, 1)
	if limit != math.MaxInt64 {
		t.Errorf("limit set again after %v, want lifted for %v", liftFor/2, liftFor)
	}
	step(liftFor, 40<<20, 2, 0.01, 1)
	if want := memoryLimitFor(40<<20, 4<<20); limit != want {
		t.Errorf("after the lift: limit %d, want %d", limit, want)
	}
}
