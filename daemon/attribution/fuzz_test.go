package attribution

import (
	"net/netip"
	"strings"
	"testing"
)

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (firefox) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 30 0 9000 123 45\n"))
	f.Add([]byte("77 (a) (b) c) Z 12 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1"))
	f.Add([]byte("1 (x)"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err == nil && st.State == 0 {
			t.Errorf("parsed %q without a state", b)
		}
	})
}

func FuzzParseSocketLink(f *testing.F) {
	f.Add([]byte("socket:[123]"))
	f.Add([]byte("pipe:[1]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := parseSocketLink(b)
		if ok && !strings.HasPrefix(string(b), "socket:[") {
			t.Errorf("%q read as socket %d", b, n)
		}
	})
}

func FuzzParseStatusIDs(f *testing.F) {
	f.Add([]byte("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t1\t2\t3\t4\n"))
	f.Add([]byte("Uid:\t\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, e, err := parseStatusIDs(b, "Uid")
		if err == nil && (r < 0 || e < 0 || r > 1<<32-1 || e > 1<<32-1) {
			t.Errorf("ids %d %d out of range", r, e)
		}
	})
}

func FuzzCgroup(f *testing.F) {
	f.Add([]byte("0::/system.slice/sshd.service\n"))
	f.Add([]byte("0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-12345.scope\n"))
	f.Add([]byte(`0::/app.slice/app-flatpak-org.example.My\x2dApp-99.scope`))
	f.Add([]byte("1:name=systemd:/system.slice/snap.lxd.daemon.service\n"))
	f.Add([]byte("0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n"))
	f.Add([]byte("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ab12.scope/container/system.slice/sshd.service\n"))
	f.Add([]byte("0::/system.slice/docker-ab12.scope/system.slice/cron.service\n"))
	f.Add([]byte("0::/a/.service/.scope/user@0.service\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := parseCgroup(b)
		if path != "" && path[0] != '/' {
			t.Errorf("path %q not absolute", path)
		}
		unit, app := cgroupUnit(path)
		// Every element of the unit is a unit-named element of the path,
		// in order, and none is left out: a nested unit never reads bare.
		var named []string
		for _, p := range strings.Split(path, "/") {
			if len(p) > len(".scope") && strings.HasSuffix(p, ".scope") || len(p) > len(".service") && strings.HasSuffix(p, ".service") {
				named = append(named, p)
			}
		}
		if want := strings.Join(named, "/"); unit != want {
			t.Errorf("path %q: unit %q, want %q", path, unit, want)
		}
		if app != "" && !strings.HasPrefix(app, "flatpak:") && !strings.HasPrefix(app, "snap:") {
			t.Errorf("app %q", app)
		}
	})
}

func FuzzParseProcNet(f *testing.F) {
	f.Add([]byte("hdr\n   25: 0100007F:F33D 0900000A:0035 01 00000000:00000340 00:00000000 00000000  1000        0 23334 2 0000000063ab1a3f 0\n"))
	f.Add([]byte("hdr\n   26: 00000000000000000000000001000000:F33E 00000000000000000000000000000000:0000 07 00000000:00000340 00:00000000 00000000     0        0 23337 2 0 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = parseProcNet(b, func(e procNetEntry) {
			if !e.Local.IsValid() || !e.Remote.IsValid() {
				t.Errorf("invalid address in %+v", e)
			}
		})
	})
}

func FuzzDecodeDiagReply(f *testing.F) {
	l, r := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("93.184.216.34:443")
	f.Add(diagReply(5, afInet, 1, l, r, 1000, 5000))
	f.Add(diagReply(5, afInet6, 10, netip.MustParseAddrPort("[::]:22"), netip.MustParseAddrPort("[::]:0"), 0, 1))
	f.Add(nlErr(5, -2))
	f.Add(append(diagReply(4, afInet, 1, l, r, 0, 1), nlErr(5, -22)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeDiagReply(b, 5)
		if err == nil && s.Family != afInet && s.Family != afInet6 {
			t.Errorf("accepted family %d", s.Family)
		}
	})
}

func FuzzParseConnectorMessages(f *testing.F) {
	f.Add(cnMsg(procEventExec, 100, 100))
	f.Add(append(cnMsg(procEventExit, 101, 100, 0, 17, 1, 1), cnMsg(procEventNone, 0)...))
	f.Add(cnMsg(procEventUID, 1, 1, 2, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = parseConnectorMessages(b, func(e procEvent) {
			switch e.What {
			case procEventExec, procEventExit, procEventUID, procEventGID, procEventNone:
			default:
				t.Errorf("unexpected event %#x", e.What)
			}
		})
	})
}
