package shared

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseEnums(t *testing.T) {
	for _, s := range []string{"allow", "deny", "reject"} {
		if a, err := ParseAction(s); err != nil || string(a) != s || !a.Known() {
			t.Errorf("ParseAction(%q) = %q, %v", s, a, err)
		}
	}
	for _, s := range []string{"once", "session", "process", "until", "forever"} {
		if l, err := ParseLifetime(s); err != nil || string(l) != s || !l.Known() {
			t.Errorf("ParseLifetime(%q) = %q, %v", s, l, err)
		}
	}
	for _, s := range []string{"out", "in"} {
		if d, err := ParseDirection(s); err != nil || string(d) != s {
			t.Errorf("ParseDirection(%q) = %q, %v", s, d, err)
		}
	}
	for _, s := range []string{"tcp", "udp", "icmp", "any"} {
		if p, err := ParseProto(s); err != nil || string(p) != s {
			t.Errorf("ParseProto(%q) = %q, %v", s, p, err)
		}
	}
	for _, bad := range []string{"", "Allow", "accept", " allow", "drop"} {
		if _, err := ParseAction(bad); err == nil {
			t.Errorf("ParseAction(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "Forever", "always"} {
		if _, err := ParseLifetime(bad); err == nil {
			t.Errorf("ParseLifetime(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "both", "OUT"} {
		if _, err := ParseDirection(bad); err == nil {
			t.Errorf("ParseDirection(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "sctp", "TCP", "icmpv6"} {
		if _, err := ParseProto(bad); err == nil {
			t.Errorf("ParseProto(%q) accepted", bad)
		}
	}
	if Action("drop").Known() || Lifetime("").Known() {
		t.Error("unknown values reported as known")
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want PortRange
		str  string
		bad  bool
	}{
		{in: "443", want: PortRange{443, 443}, str: "443"},
		{in: "1", want: PortRange{1, 1}, str: "1"},
		{in: "65535", want: PortRange{65535, 65535}, str: "65535"},
		{in: "8000-8100", want: PortRange{8000, 8100}, str: "8000-8100"},
		{in: "22-22", want: PortRange{22, 22}, str: "22"},
		{in: "1-65535", want: PortRange{1, 65535}, str: "1-65535"},
		{in: "0443", want: PortRange{443, 443}, str: "443"},
		{in: "", bad: true},
		{in: "0", bad: true},
		{in: "0-10", bad: true},
		{in: "65536", bad: true},
		{in: "100-99", bad: true},
		{in: "-1", bad: true},
		{in: "1-", bad: true},
		{in: "1-2-3", bad: true},
		{in: " 443", bad: true},
		{in: "+443", bad: true},
		{in: "4 43", bad: true},
		{in: "any", bad: true},
		{in: "99999999999999999999", bad: true},
	}
	for _, tt := range tests {
		got, err := ParsePortRange(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParsePortRange(%q) = %v, want error", tt.in, got)
			} else if !errors.Is(err, ErrBadPortRange) {
				t.Errorf("ParsePortRange(%q) error %v does not wrap ErrBadPortRange", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if s := got.String(); s != tt.str {
			t.Errorf("%v.String() = %q, want %q", got, s, tt.str)
		}
	}
}

func TestPortRangeContains(t *testing.T) {
	zero := PortRange{}
	if !zero.IsAny() || !zero.Contains(0) || !zero.Contains(65535) || zero.String() != "any" || zero.Width() != 65536 {
		t.Errorf("zero range: IsAny %v Contains(0) %v String %q Width %d", zero.IsAny(), zero.Contains(0), zero.String(), zero.Width())
	}
	r := PortRange{8000, 8100}
	for p, want := range map[uint16]bool{7999: false, 8000: true, 8050: true, 8100: true, 8101: false, 0: false} {
		if got := r.Contains(p); got != want {
			t.Errorf("%v.Contains(%d) = %v", r, p, got)
		}
	}
	if r.IsAny() || r.Width() != 101 {
		t.Errorf("%v: IsAny %v Width %d", r, r.IsAny(), r.Width())
	}
	one := PortRange{443, 443}
	if !one.Contains(443) || one.Contains(444) || one.Width() != 1 {
		t.Errorf("single port range wrong")
	}
}

func TestParseIP(t *testing.T) {
	tests := []struct {
		in, want, str string
		bad           bool
	}{
		{in: "192.0.2.7", want: "192.0.2.7/32", str: "192.0.2.7"},
		{in: "10.0.0.0/8", want: "10.0.0.0/8", str: "10.0.0.0/8"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8", str: "10.0.0.0/8"},
		{in: "2001:db8::1", want: "2001:db8::1/128", str: "2001:db8::1"},
		{in: "2001:db8::/32", want: "2001:db8::/32", str: "2001:db8::/32"},
		{in: "::ffff:192.0.2.7", want: "192.0.2.7/32", str: "192.0.2.7"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8", str: "10.0.0.0/8"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0", str: "0.0.0.0/0"},
		{in: "", bad: true},
		{in: "fe80::1%eth0", bad: true},
		{in: "10.0.0.0/33", bad: true},
		{in: "example.org", bad: true},
		{in: "1.2.3", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseIP(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseIP(%q) = %v, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tt.want) {
			t.Errorf("ParseIP(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			continue
		}
		if s := FormatIP(got); s != tt.str {
			t.Errorf("FormatIP(%v) = %q, want %q", got, s, tt.str)
		}
	}
	if FormatIP(netip.Prefix{}) != "" {
		t.Error("FormatIP of the zero prefix is not empty")
	}
}

func TestParseOwner(t *testing.T) {
	for in, want := range map[string]uint32{"root": 0, "system": 0, "0": 0, "1000": 1000, "4294967295": 4294967295} {
		if got, err := ParseOwner(in); err != nil || got != want {
			t.Errorf("ParseOwner(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "alice", "-1", "4294967296", "1e3"} {
		if _, err := ParseOwner(bad); err == nil {
			t.Errorf("ParseOwner(%q) accepted", bad)
		}
	}
}

func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"443", "8000-8100", "0", "1-65535", "65536", "5-4", "-", "", "01-02"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err != nil {
			return
		}
		if r.Lo == 0 || r.Lo > r.Hi {
			t.Fatalf("ParsePortRange(%q) = %+v: not a valid range", s, r)
		}
		if !r.Contains(r.Lo) || !r.Contains(r.Hi) || r.IsAny() {
			t.Fatalf("ParsePortRange(%q) = %+v: does not contain its ends", s, r)
		}
		again, err := ParsePortRange(r.String())
		if err != nil || again != r {
			t.Fatalf("round trip %q -> %q -> %+v, %v", s, r.String(), again, err)
		}
	})
}
