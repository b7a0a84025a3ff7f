package store

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate-fw/tollgate/shared"
)

// mappedRSS returns the resident kB of this process's mappings of path,
// from /proc/self/smaps.
func mappedRSS(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	in, total := false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = fields[len(fields)-1] == path
			continue
		}
		if in && fields[0] == "Rss:" {
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			total += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// TestRulesReleasesMappedPages: loading every rule reads every page of the
// file through bbolt's map; afterwards those pages are no longer resident
// in the process (they were megabytes at 8k rules), and the rules are
// still all there and readable again.
func TestRulesReleasesMappedPages(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path})
	rs := make([]shared.Rule, 8_000)
	for i := range rs {
		rs[i] = fullRule(fmt.Sprintf("rule-%06d", i))
	}
	if err := s.PutRules(rs); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() < 2<<20 {
		t.Fatalf("file is %d bytes: too small to show anything", info.Size())
	}
	for round := range 2 {
		got, bad, err := s.Rules()
		if err != nil || len(bad) != 0 || len(got) != len(rs) {
			t.Fatalf("round %d: %d rules, bad %v, err %v", round, len(got), bad, err)
		}
		if kb := mappedRSS(t, path); kb > 256 {
			t.Errorf("round %d: %d kB of the %d kB file still resident after loading the rules", round, kb, info.Size()>>10)
		}
	}
}
