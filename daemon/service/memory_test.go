package service

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
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
	tuneMemoryLimit(log)
	if got := debug.SetMemoryLimit(-1); got < memLimitFloor || got == math.MaxInt64 {
		t.Errorf("limit %d, want at least the floor", got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "1GiB")
	tuneMemoryLimit(log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT set, yet the limit became %d", got)
	}
}
