package attribution

import (
	"os"
	"strconv"
	"testing"
)

// TestStatMainThreadMatchesProcess checks that the main thread's stat,
// which procFS.stat reads, gives the process's state, parent and start
// time as /proc/PID/stat does (this test binary is multi-threaded).
func TestStatMainThreadMatchesProcess(t *testing.T) {
	fp := newProcFS("/proc", nil)
	pid := os.Getpid()
	got, err := fp.stat(pid)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	want, err := parseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Start != want.Start || got.PPID != want.PPID || got.exited() != want.exited() {
		t.Errorf("main thread stat %+v, process stat %+v", got, want)
	}
	if _, err := fp.stat(1 << 30); !isGone(err) {
		t.Errorf("stat of a pid that does not exist: %v, want not exist", err)
	}
}
