package queue

import (
	"errors"
	"strings"
	"testing"
)

// A table as the kernel prints it ("%5u %6u %5u %1u %5u %5u %5u %8u %2d\n").
const statsTable = `    0   4123     0 2 65535     0     0        0  1
    7 2147483648    12 2 65531     3     4   123456  1
65535      9     1 1     0     0     0       17  1
`

func TestParseStats(t *testing.T) {
	tests := []struct {
		name  string
		table string
		num   uint16
		want  Stats
		err   error
	}{
		{
			name: "first line", table: statsTable, num: 0,
			want: Stats{Num: 0, PortID: 4123, CopyMode: 2, CopyRange: 65535},
		},
		{
			name: "wide fields", table: statsTable, num: 7,
			want: Stats{Num: 7, PortID: 2147483648, Waiting: 12, CopyMode: 2, CopyRange: 65531,
				QueueDropped: 3, UserDropped: 4, IDSequence: 123456},
		},
		{
			name: "last queue number", table: statsTable, num: 65535,
			want: Stats{Num: 65535, PortID: 9, Waiting: 1, CopyMode: 1, IDSequence: 17},
		},
		{name: "absent", table: statsTable, num: 8, err: ErrNoQueue},
		{name: "empty file", table: "", num: 0, err: ErrNoQueue},
		{
			name: "without the constant last field", table: "3 1 2 2 100 5 6 7\n", num: 3,
			want: Stats{Num: 3, PortID: 1, Waiting: 2, CopyMode: 2, CopyRange: 100, QueueDropped: 5, UserDropped: 6, IDSequence: 7},
		},
		{
			name: "malformed other lines are skipped", table: "junk\n\n 99999 x\n5 1 x\n3 1 2 2 100 5 6 7 1\n", num: 3,
			want: Stats{Num: 3, PortID: 1, Waiting: 2, CopyMode: 2, CopyRange: 100, QueueDropped: 5, UserDropped: 6, IDSequence: 7},
		},
		{name: "too few fields", table: "3 1 2 2 100 5 6\n", num: 3, err: ErrStatsFormat},
		{name: "not a number", table: "3 1 2 2 100 5 six 7 1\n", num: 3, err: ErrStatsFormat},
		{name: "negative", table: "3 1 -2 2 100 5 6 7 1\n", num: 3, err: ErrStatsFormat},
		{name: "overflow", table: "3 1 4294967296 2 100 5 6 7 1\n", num: 3, err: ErrStatsFormat},
		{name: "copy mode overflow", table: "3 1 2 256 100 5 6 7 1\n", num: 3, err: ErrStatsFormat},
		{name: "queue number out of range is not queue 0", table: "65536 1 2 2 100 5 6 7 1\n", num: 0, err: ErrNoQueue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStats(strings.NewReader(tt.table), tt.num)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseStats error = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("ParseStats = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatsLongLine(t *testing.T) {
	_, err := ParseStats(strings.NewReader(strings.Repeat("1", 70000)+"\n"), 1)
	if err == nil || errors.Is(err, ErrNoQueue) {
		t.Fatalf("ParseStats of an over-long line = %v, want a read error", err)
	}
}

func FuzzParseStats(f *testing.F) {
	f.Add(statsTable, uint16(7))
	f.Add("3 1 2 2 100 5 6 7 1\n", uint16(3))
	f.Add("3 1 2 2 100 5 6\n", uint16(3))
	f.Add("\n\n\x00 3", uint16(0))
	f.Fuzz(func(t *testing.T, table string, num uint16) {
		st, err := ParseStats(strings.NewReader(table), num)
		if err != nil {
			if st != (Stats{}) {
				t.Fatalf("ParseStats returned %+v with error %v", st, err)
			}
			return
		}
		if st.Num != num {
			t.Fatalf("ParseStats(%d) returned queue %d", num, st.Num)
		}
	})
}

func TestFlagString(t *testing.T) {
	tests := []struct {
		f    Flag
		want string
	}{
		{0, "none"},
		{FlagUIDGID, "uid-gid"},
		{FlagFailOpen | FlagGSO | FlagUIDGID, "fail-open,gso,uid-gid"},
		{FlagGSO | 1<<6, "gso,0x40"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("Flag(%#x).String() = %q, want %q", uint32(tt.f), got, tt.want)
		}
	}
}

func TestFlagFallbacks(t *testing.T) {
	all := FlagFailOpen | FlagUIDGID | FlagGSO
	got := flagFallbacks(all)
	want := []Flag{
		all,
		FlagFailOpen | FlagUIDGID,
		FlagFailOpen | FlagGSO,
		FlagFailOpen,
		FlagUIDGID | FlagGSO,
		FlagUIDGID,
		FlagGSO,
		0,
	}
	if len(got) != len(want) {
		t.Fatalf("flagFallbacks(all) = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("flagFallbacks(all)[%d] = %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
	noFailOpen := flagFallbacks(FlagUIDGID | FlagGSO)
	if len(noFailOpen) != 4 || noFailOpen[0] != FlagUIDGID|FlagGSO || noFailOpen[3] != 0 {
		t.Fatalf("flagFallbacks(uid-gid,gso) = %v", noFailOpen)
	}
	for _, f := range noFailOpen {
		if f&FlagFailOpen != 0 {
			t.Fatalf("fallback %v asks for fail-open, which was not wanted", f)
		}
	}
}

func TestVerdictString(t *testing.T) {
	tests := []struct {
		v    Verdict
		want string
	}{
		{Verdict{Kind: Accept}, "accept"},
		{Verdict{Kind: Drop}, "drop"},
		{Verdict{Kind: Repeat, Mark: 0x100001, SetMark: true}, "repeat mark=0x100001"},
		{Verdict{}, "VerdictKind(0)"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.v, got, tt.want)
		}
	}
}
