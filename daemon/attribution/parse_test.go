package attribution

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want statInfo
		err  bool
	}{
		{in: "4242 (firefox) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 30 0 9000 123 45\n", want: statInfo{'S', 1, 9000}},
		{in: "77 (a) (b) c) Z 12 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 18446744073709551615", want: statInfo{'Z', 12, 1<<64 - 1}},
		{in: "1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5", want: statInfo{'S', 0, 5}},
		{in: "1 (init) S 0 1", err: true},
		{in: "no paren", err: true},
		{in: "1 (x) SS 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5", err: true},
		{in: "1 (x) S -3 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5", err: true},
		{in: "1 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 abc", err: true},
		{in: "", err: true},
	} {
		got, err := parseStat([]byte(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, errMalformed) {
			t.Errorf("parseStat(%q) error %v is not errMalformed", tc.in, err)
		}
	}
}

func TestParseSocketLink(t *testing.T) {
	for in, want := range map[string]uint64{
		"socket:[123]":                  123,
		"socket:[0]":                    0,
		"socket:[18446744073709551615]": 1<<64 - 1,
	} {
		if got, ok := parseSocketLink([]byte(in)); !ok || got != want {
			t.Errorf("parseSocketLink(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "socket:[]", "socket:[12a]", "pipe:[123]", "/dev/null", "socket:[18446744073709551616]", "socket:[1", "anon_inode:[eventfd]"} {
		if got, ok := parseSocketLink([]byte(in)); ok {
			t.Errorf("parseSocketLink(%q) = %d, want not a socket", in, got)
		}
	}
}

func TestParseStatusIDs(t *testing.T) {
	status := "Name:\tsleep\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t100\t101\t102\t103\nGroups:\t4 24\n"
	if r, e, err := parseStatusIDs([]byte(status), "Uid"); err != nil || r != 1000 || e != 0 {
		t.Errorf("Uid = %d %d %v", r, e, err)
	}
	if r, e, err := parseStatusIDs([]byte(status), "Gid"); err != nil || r != 100 || e != 101 {
		t.Errorf("Gid = %d %d %v", r, e, err)
	}
	for _, bad := range []string{"", "Name:\tx\n", "Uid:\t1000\n", "Uid:\tx\ty\n", "Uid:\t-1\t0\n", "Uidx:\t1\t1\n"} {
		if _, _, err := parseStatusIDs([]byte(bad), "Uid"); err == nil {
			t.Errorf("parseStatusIDs(%q) succeeded", bad)
		}
	}
}

func TestCgroupUnit(t *testing.T) {
	for _, tc := range []struct{ file, path, unit, app string }{
		{"0::/system.slice/sshd.service\n", "/system.slice/sshd.service", "sshd.service", ""},
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-12345.scope\n",
			"/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-12345.scope",
			"user@1000.service/app-flatpak-org.mozilla.firefox-12345.scope", "flatpak:org.mozilla.firefox"},
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-com.github.tchx84.Flatseal-4142.scope",
			"/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-com.github.tchx84.Flatseal-4142.scope",
			"user@1000.service/app-flatpak-com.github.tchx84.Flatseal-4142.scope", "flatpak:com.github.tchx84.Flatseal"},
		{`0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.example.My\x2dApp-99.scope`,
			`/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.example.My\x2dApp-99.scope`,
			`user@1000.service/app-flatpak-org.example.My\x2dApp-99.scope`, "flatpak:org.example.My-App"},
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/snap.firefox.firefox-2c5b3f2e-9b1e-4c8e-a1d2-0123456789ab.scope\n",
			"/user.slice/user-1000.slice/user@1000.service/app.slice/snap.firefox.firefox-2c5b3f2e-9b1e-4c8e-a1d2-0123456789ab.scope",
			"user@1000.service/snap.firefox.firefox-2c5b3f2e-9b1e-4c8e-a1d2-0123456789ab.scope", "snap:firefox"},
		{"0::/system.slice/snap.lxd.daemon.service\n", "/system.slice/snap.lxd.daemon.service", "snap.lxd.daemon.service", "snap:lxd"},
		{"0::/system.slice/docker.service/sub/group\n", "/system.slice/docker.service/sub/group", "docker.service", ""},
		{"0::/user.slice/user-1000.slice/session-2.scope\n", "/user.slice/user-1000.slice/session-2.scope", "session-2.scope", ""},
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope\n",
			"/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope", "user@1000.service/app-gnome-firefox-4242.scope", ""},
		// A user's manager names everything below user@UID.service: a
		// user unit never reads as the system unit of the same name.
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n",
			"/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service", "user@1000.service/backup.service", ""},
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service\n",
			"/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service", "user@1000.service/sshd.service", ""},
		// The user's manager itself, and the unit that holds it.
		{"0::/user.slice/user-1000.slice/user@1000.service/init.scope\n",
			"/user.slice/user-1000.slice/user@1000.service/init.scope", "user@1000.service/init.scope", ""},
		{"0::/user.slice/user-1000.slice/user@1000.service\n", "/user.slice/user-1000.slice/user@1000.service", "user@1000.service", ""},
		// Deeper delegation (a rootless container in the user's tree):
		// every unit on the way.
		{"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ab12.scope/container/system.slice/backup.service\n",
			"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ab12.scope/container/system.slice/backup.service",
			"user@1000.service/libpod-ab12.scope/backup.service", ""},
		// A system container's scope is delegated too.
		{"0::/system.slice/docker-ab12.scope/system.slice/cron.service\n",
			"/system.slice/docker-ab12.scope/system.slice/cron.service", "docker-ab12.scope/cron.service", ""},
		// A user claiming a flatpak app: App is set (the user's claim),
		// the unit says where the claim was made.
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-com.bank.Client-7.scope\n",
			"/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-com.bank.Client-7.scope",
			"user@1000.service/app-flatpak-com.bank.Client-7.scope", "flatpak:com.bank.Client"},
		// A bare suffix is not a unit.
		{"0::/system.slice/.service\n", "/system.slice/.service", "", ""},
		// cgroup v1: the name=systemd hierarchy.
		{"12:cpu,cpuacct:/foo\n1:name=systemd:/system.slice/cron.service\n", "/system.slice/cron.service", "cron.service", ""},
		// Both: the unified line wins, wherever it is.
		{"1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n", "/system.slice/b.service", "b.service", ""},
		{"0::/\n", "/", "", ""},
		{"0::/init.scope\n", "/init.scope", "init.scope", ""},
		{"", "", "", ""},
		{"garbage\n0:x\n", "", "", ""},
		// Not a Flatpak id (one element): no app.
		{"0::/app.slice/app-flatpak-foo-12.scope\n", "/app.slice/app-flatpak-foo-12.scope", "app-flatpak-foo-12.scope", ""},
		// A path holding ':'.
		{"0::/a:b/x.service\n", "/a:b/x.service", "x.service", ""},
	} {
		path := parseCgroup([]byte(tc.file))
		unit, app := cgroupUnit(path)
		if path != tc.path || unit != tc.unit || app != tc.app {
			t.Errorf("%q: path %q unit %q app %q; want %q %q %q", tc.file, path, unit, app, tc.path, tc.unit, tc.app)
		}
	}
}

func TestParseProcNet(t *testing.T) {
	in := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
		"   25: 0100007F:F33D 0900000A:0035 01 00000000:00000340 00:00000000 00000000  1000        0 23334 2 0000000063ab1a3f 0\n" +
		"   26: 00000000000000000000000001000000:F33E 00000000000000000000000000000000:0000 07 00000000:00000340 00:00000000 00000000     0        0 23337 2 000000000b37944b 0\n" +
		"   27: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000340 00:00000000 00000000     0        0 99 2 000000000b37944b 0\n"
	var got []procNetEntry
	if err := parseProcNet([]byte(in), func(e procNetEntry) { got = append(got, e) }); err != nil {
		t.Fatal(err)
	}
	want := []procNetEntry{
		{Local: netip.MustParseAddrPort("127.0.0.1:62269"), Remote: netip.MustParseAddrPort("10.0.0.9:53"), State: 1, UID: 1000, Inode: 23334},
		{Local: netip.MustParseAddrPort("[::1]:62270"), Remote: netip.MustParseAddrPort("[::]:0"), State: 7, UID: 0, Inode: 23337},
		{Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("[::]:0"), State: 10, UID: 0, Inode: 99},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{
		"hdr\n 1: 0100007F 0900000A:0035 01 0 0 0 1000 0 1 2\n",
		"hdr\n 1: 0100007F:XYZ 0900000A:0035 01 0 0 0 1000 0 1 2\n",
		"hdr\n 1: 0100007F:0035 0900000A:0035 01 0 0 0 x 0 1 2\n",
		"hdr\n 1: 0100:0035 0900000A:0035 01 0 0 0 1 0 1 2\n",
		"hdr\n 1: 0100007F:0035\n",
	} {
		if err := parseProcNet([]byte(bad), func(procNetEntry) {}); err == nil {
			t.Errorf("parseProcNet(%q) succeeded", bad)
		}
	}
}

// diagReply builds a kernel answer: one inet_diag_msg.
func diagReply(seq uint32, family, state uint8, local, remote netip.AddrPort, uid, inode uint32) []byte {
	b := make([]byte, sizeofNlMsghdr+sizeofInetDiagMsg)
	native.PutUint32(b[0:4], uint32(len(b)))
	native.PutUint16(b[4:6], msgSockDiagByFam)
	native.PutUint32(b[8:12], seq)
	m := b[sizeofNlMsghdr:]
	m[0], m[1] = family, state
	binary.BigEndian.PutUint16(m[4:6], local.Port())
	binary.BigEndian.PutUint16(m[6:8], remote.Port())
	putAddr(m[8:24], local.Addr(), family)
	putAddr(m[24:40], remote.Addr(), family)
	native.PutUint32(m[64:68], uid)
	native.PutUint32(m[68:72], inode)
	return b
}

func nlErr(seq uint32, errno int32) []byte {
	b := make([]byte, sizeofNlMsghdr+sizeofNlMsgerr)
	native.PutUint32(b[0:4], uint32(len(b)))
	native.PutUint16(b[4:6], msgNlError)
	native.PutUint32(b[8:12], seq)
	native.PutUint32(b[16:20], uint32(errno)) // the kernel sends -errno
	return b
}

func TestDiagRequestEncoding(t *testing.T) {
	r := diagRequest{Seq: 7, Family: afInet, Protocol: protoTCP, States: allStates,
		Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("93.184.216.34:443"), IfIndex: 3}
	b := r.encode(nil)
	if len(b) != diagRequestMaxSize || native.Uint32(b[0:4]) != uint32(len(b)) || native.Uint16(b[4:6]) != msgSockDiagByFam ||
		native.Uint16(b[6:8]) != flagNlRequest || native.Uint32(b[8:12]) != 7 {
		t.Fatalf("header % x", b[:16])
	}
	q := b[16:]
	want := []byte{afInet, protoTCP, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x9c, 0x40, 0x01, 0xbb, 10, 0, 0, 1}
	if !bytes.Equal(q[:16], want) {
		t.Errorf("request start % x, want % x", q[:16], want)
	}
	if !bytes.Equal(q[28:32], []byte{93, 184, 216, 34}) || native.Uint32(q[44:48]) != 3 || native.Uint32(q[48:52]) != inetDiagNoCookie {
		t.Errorf("request % x", q)
	}
	r6 := diagRequest{Seq: 8, Family: afInet6, Protocol: protoUDP, Src: netip.MustParseAddrPort("[2001:db8::1]:53")}
	q6 := r6.encode(nil)[16:]
	if a := netip.AddrFrom16([16]byte(q6[12:28])); a != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("IPv6 source %v", a)
	}
	if !bytes.Equal(q6[28:44], make([]byte, 16)) {
		t.Errorf("missing destination not zero: % x", q6[28:44])
	}
}

func TestDecodeDiagReply(t *testing.T) {
	l, r := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("93.184.216.34:443")
	s, err := decodeDiagReply(diagReply(5, afInet, 1, l, r, 1000, 5000), 5)
	if err != nil || s.Local != l || s.Remote != r || s.UID != 1000 || s.Inode != 5000 || s.State != 1 {
		t.Errorf("decode: %+v, %v", s, err)
	}
	// A v4-mapped address of a dual-stack socket reads as IPv4.
	m := netip.AddrPortFrom(netip.MustParseAddr("::ffff:10.0.0.1"), 40000)
	s, err = decodeDiagReply(diagReply(5, afInet6, 1, m, netip.MustParseAddrPort("[::ffff:93.184.216.34]:443"), 0, 1), 5)
	if err != nil || s.Local != l || s.Remote != r {
		t.Errorf("decode mapped: %+v, %v", s, err)
	}
	if _, err := decodeDiagReply(nlErr(5, -2), 5); !errors.Is(err, errNoSocket) {
		t.Errorf("ENOENT: %v, want errNoSocket", err)
	}
	if _, err := decodeDiagReply(nlErr(5, -22), 5); err == nil || errors.Is(err, errNoSocket) {
		t.Errorf("EINVAL: %v, want an error", err)
	}
	// An answer to an earlier request is skipped; the current one is read.
	two := append(diagReply(4, afInet, 1, l, r, 0, 1), diagReply(5, afInet, 1, l, r, 0, 2)...)
	if s, err := decodeDiagReply(two, 5); err != nil || s.Inode != 2 {
		t.Errorf("stale then current: %+v %v", s, err)
	}
	if _, err := decodeDiagReply(diagReply(4, afInet, 1, l, r, 0, 1), 5); !errors.Is(err, errStaleReply) {
		t.Errorf("only stale: %v", err)
	}
	short := diagReply(5, afInet, 1, l, r, 0, 1)
	native.PutUint32(short[0:4], 40)
	if _, err := decodeDiagReply(short[:40], 5); err == nil {
		t.Error("short inet_diag_msg accepted")
	}
	bad := diagReply(5, 99, 1, l, r, 0, 1)
	if _, err := decodeDiagReply(bad, 5); err == nil {
		t.Error("family 99 accepted")
	}
	if _, err := decodeDiagReply(short[:10], 5); !errors.Is(err, errStaleReply) {
		t.Errorf("truncated header: %v", err)
	}
	huge := diagReply(5, afInet, 1, l, r, 0, 1)
	native.PutUint32(huge[0:4], 1000)
	if _, err := decodeDiagReply(huge, 5); err == nil || errors.Is(err, errStaleReply) {
		t.Errorf("length past the end: %v", err)
	}
}

func TestSockMatchesFlow(t *testing.T) {
	l, r := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("93.184.216.34:443")
	any4 := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	for _, tc := range []struct {
		s      sockInfo
		listen bool
		want   bool
	}{
		{sockInfo{State: 1, Local: l, Remote: r}, false, true},
		{sockInfo{State: 7, Local: netip.AddrPortFrom(netip.IPv4Unspecified(), 40000), Remote: any4}, false, true},
		{sockInfo{State: 7, Local: netip.AddrPortFrom(netip.IPv6Unspecified(), 40000), Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0)}, false, true},
		{sockInfo{State: 1, Local: l, Remote: netip.MustParseAddrPort("93.184.216.34:444")}, false, false},
		{sockInfo{State: 1, Local: netip.MustParseAddrPort("10.0.0.2:40000"), Remote: r}, false, false},
		{sockInfo{State: 1, Local: netip.MustParseAddrPort("10.0.0.1:40001"), Remote: r}, false, false},
		{sockInfo{State: tcpStateListen, Local: netip.AddrPortFrom(netip.IPv6Unspecified(), 40000)}, false, false},
		{sockInfo{State: tcpStateListen, Local: netip.AddrPortFrom(netip.IPv6Unspecified(), 40000)}, true, true},
		{sockInfo{State: 1, Local: l, Remote: r}, true, false},
	} {
		if got := tc.s.matchesFlow(l, r, tc.listen); got != tc.want {
			t.Errorf("%+v listen=%v: %v, want %v", tc.s, tc.listen, got, tc.want)
		}
	}
}

// cnMsg builds one proc connector datagram with a proc_event.
func cnMsg(what uint32, data ...uint32) []byte {
	ev := make([]byte, sizeofProcEventHdr+4*len(data))
	native.PutUint32(ev[0:4], what)
	for i, d := range data {
		native.PutUint32(ev[sizeofProcEventHdr+4*i:], d)
	}
	b := make([]byte, sizeofNlMsghdr+sizeofCnMsg+len(ev))
	native.PutUint32(b[0:4], uint32(len(b)))
	native.PutUint16(b[4:6], msgNlDone)
	c := b[sizeofNlMsghdr:]
	native.PutUint32(c[0:4], cnIdxProc)
	native.PutUint32(c[4:8], cnValProc)
	native.PutUint32(c[8:12], 9)
	native.PutUint32(c[12:16], 1)
	native.PutUint16(c[16:18], uint16(len(ev)))
	copy(c[sizeofCnMsg:], ev)
	return b
}

func TestParseConnectorMessages(t *testing.T) {
	var in []byte
	in = append(in, cnMsg(procEventExec, 100, 100)...)
	in = append(in, cnMsg(procEventFork, 1, 1, 100, 100)...)
	in = append(in, cnMsg(procEventExit, 101, 100, 0, 17, 1, 1)...)
	in = append(in, cnMsg(procEventUID, 100, 100, 1000, 1000)...)
	in = append(in, cnMsg(procEventGID, 100, 100, 1000, 1000)...)
	in = append(in, cnMsg(procEventNone, 0)...)
	var got []procEvent
	if err := parseConnectorMessages(in, func(e procEvent) { got = append(got, e) }); err != nil {
		t.Fatal(err)
	}
	want := []procEvent{
		{What: procEventExec, PID: 100, TID: 100},
		{What: procEventExit, PID: 100, TID: 101},
		{What: procEventUID, PID: 100, TID: 100},
		{What: procEventGID, PID: 100, TID: 100},
		{What: procEventNone, Seq: 9, Ack: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// The listen request decodes as a connector message too.
	l := encodeListen(1)
	if native.Uint32(l[0:4]) != uint32(len(l)) || native.Uint32(l[len(l)-4:]) != procCnMcastListen {
		t.Errorf("listen message % x", l)
	}
	for name, bad := range map[string][]byte{
		"short header": cnMsg(procEventExec, 1, 1)[:10],
		"short exec":   cnMsg(procEventExec, 1),
		"cn len past":  func() []byte { b := cnMsg(procEventExec, 1, 1); native.PutUint16(b[16+16:], 200); return b }(),
		"nl len past":  func() []byte { b := cnMsg(procEventExec, 1, 1); native.PutUint32(b, 500); return b }(),
	} {
		if err := parseConnectorMessages(bad, func(procEvent) {}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Other connector users' messages are ignored.
	other := cnMsg(procEventExec, 1, 1)
	native.PutUint32(other[16:], 7)
	n := 0
	if err := parseConnectorMessages(other, func(procEvent) { n++ }); err != nil || n != 0 {
		t.Errorf("foreign connector message: %d events, %v", n, err)
	}
}

func TestGenCache(t *testing.T) {
	c := newGenCache[int, string](3)
	c.put(1, "a")
	c.put(2, "b")
	c.put(3, "c") // rotates: 1,2,3 are now old
	if v, ok := c.get(1); !ok || v != "a" {
		t.Fatalf("get(1) = %q %v", v, ok)
	}
	c.put(4, "d")
	c.put(5, "e") // rotates again: 2 and 3 (never read) are dropped
	if _, ok := c.get(2); ok {
		t.Error("idle entry 2 survived two rotations")
	}
	for _, k := range []int{1, 4, 5} {
		if _, ok := c.get(k); !ok {
			t.Errorf("entry %d lost", k)
		}
	}
	c.delete(4)
	if _, ok := c.get(4); ok {
		t.Error("deleted entry found")
	}
	if c.len() > 2*3 {
		t.Errorf("len %d beyond two generations", c.len())
	}
	n := 0
	c.each(func(int, string) { n++ })
	if n != c.len() {
		t.Errorf("each saw %d entries, len %d", n, c.len())
	}
}

func TestUnescapeUnit(t *testing.T) {
	for in, want := range map[string]string{
		`a\x2db`: "a-b", `plain`: "plain", `\x2`: `\x2`, `\xzz`: `\xzz`, `end\x2d`: "end-", `\x5c\x2d`: `\-`,
	} {
		if got := unescapeUnit(in); got != want {
			t.Errorf("unescapeUnit(%q) = %q, want %q", in, got, want)
		}
	}
	if strings.Contains(unescapeUnit(`x\x00y`), "\\") {
		t.Error("NUL escape kept")
	}
}
