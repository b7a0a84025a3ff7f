package netns

import "testing"

func TestParseCountersAndSince(t *testing.T) {
	before, err := parseCounters("Tcp: RtoMin OutRsts\nTcp: 200 3\nTcpExt: TCPAbortOnData ListenDrops\nTcpExt: 0 1\n")
	if err != nil {
		t.Fatal(err)
	}
	if before["Tcp.OutRsts"] != 3 || before["TcpExt.ListenDrops"] != 1 {
		t.Fatalf("parsed %v", before)
	}
	after := Counters{"Tcp.RtoMin": 200, "Tcp.OutRsts": 5, "TcpExt.TCPAbortOnData": 1, "TcpExt.ListenDrops": 1}
	if got, want := after.Since(before), "Tcp.OutRsts +2, TcpExt.TCPAbortOnData +1"; got != want {
		t.Errorf("Since = %q, want %q", got, want)
	}
	if got, want := after.Since(before, "TcpExt"), "TcpExt.TCPAbortOnData +1"; got != want {
		t.Errorf("Since(TcpExt) = %q, want %q", got, want)
	}
	for _, bad := range []string{"Tcp: A B\nTcp: 1\n", "Tcp: A\nUdp: 1\n", "Tcp: A\nTcp: x\n", "A B\n1 2\n"} {
		if _, err := parseCounters(bad); err == nil {
			t.Errorf("parseCounters(%q) took it", bad)
		}
	}
}
