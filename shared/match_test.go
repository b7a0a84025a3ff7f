package shared

import (
	"net/netip"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestHostMatches(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"example.org", "example.org", true},
		{"example.org", "EXAMPLE.org", true},
		{"example.org", "example.org.", true},
		{"example.org.", "example.org", true},
		{"example.org", "www.example.org", false},
		{"example.org", "example.com", false},
		{"example.org", "xexample.org", false},
		{"*.example.org", "a.example.org", true},
		{"*.example.org", "a.b.example.org", true},
		{"*.example.org", "A.Example.ORG.", true},
		{"*.example.org", "example.org", false},
		{"*.example.org", ".example.org", false},
		{"*.example.org", "badexample.org", false},
		{"*.example.org", "a.example.org.evil", false},
		{"*.org", "example.org", true},
		{"*.", "example.org", false},
		{"*", "example.org", false},
		{"", "example.org", false},
		{"example.org", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := HostMatches(tt.pattern, tt.name); got != tt.want {
			t.Errorf("HostMatches(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestHostMatchesNoAlloc(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		HostMatches("*.Example.org", "a.b.example.ORG.")
	})
	if allocs != 0 {
		t.Errorf("HostMatches allocates %v times", allocs)
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"curl *", "curl https://example.org/x", true},
		{"curl *", "curl", false},
		{"curl*", "curl", true},
		{"*", "", true},
		{"*", "/a/b c", true},
		{"", "", true},
		{"", "x", false},
		{"python3 /home/*/bin/*.py", "python3 /home/me/bin/x/y.py", true},
		{"python3 /home/*/bin/*.py", "python3 /home/me/bin/x/y.pyc", false},
		{"a?c", "a/c", true},
		{"a?c", "aéc", true},
		{"a?c", "ac", false},
		{"*x*y*", "aaxbbyc", true},
		{"*x*y*", "aaybbxc", false},
		{"[abc]x", "bx", true},
		{"[^abc]x", "bx", false},
		{"[^abc]x", "dx", true},
		{"[a-c]", "b", true},
		{"[a-c]", "d", false},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{`a\`, "a", false},   // malformed
		{"[", "[", false},    // malformed
		{"[]a]", "a", false}, // malformed: empty class
		{"*[", "x[", false},  // malformed
		{"a*b*c", "abbbc", true},
		{"a*b*c", "acb", false},
		{"**", "anything", true},
		{"*??", "斣0", true}, // '?' is one character, not one byte
		{"*???", "斣0", false},
		{"[0\xc2]", "0", false},   // invalid UTF-8 in a class is malformed
		{"\\\xf8", "\xa6", false}, // an escape matches its byte only
	}
	for _, tt := range tests {
		if got := GlobMatch(tt.pattern, tt.name); got != tt.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

// FuzzGlobMatch checks GlobMatch against path.Match, which must agree on
// ASCII names without a slash. (With a slash their meanings differ on
// purpose; with multi-byte characters path.Match's '*' may stop inside a
// character and let '?' match half of it, which GlobMatch does not.)
func FuzzGlobMatch(f *testing.F) {
	f.Add("a*b?c", "axxbyc")
	f.Add("[^a-c]*", "dog")
	f.Add(`\[*`, "[x")
	f.Add("*é*", "café")
	f.Add("[", "")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := GlobMatch(pattern, name)
		if strings.Contains(name, "/") || strings.IndexFunc(name, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0 {
			return
		}
		want, err := path.Match(pattern, name)
		if err != nil {
			if got {
				t.Fatalf("GlobMatch(%q, %q) matched a malformed pattern", pattern, name)
			}
			return
		}
		if got != want {
			t.Fatalf("GlobMatch(%q, %q) = %v, path.Match says %v", pattern, name, got, want)
		}
	})
}

func u32(n uint32) *uint32 { return &n }

func TestSpecificityOrder(t *testing.T) {
	// Each pair: the first is more specific than the second.
	pairs := []struct {
		name       string
		more, less Match
	}{
		{"exact exe beats glob exe", Match{Exe: "/usr/bin/ssh"}, Match{Exe: "/usr/bin/*"}},
		{"longer glob beats shorter", Match{Exe: "/usr/lib/firefox/*"}, Match{Exe: "/usr/*"}},
		{"sha256 pin adds", Match{Exe: "/usr/bin/ssh", ExeSHA256: strings.Repeat("a", 64)}, Match{Exe: "/usr/bin/ssh"}},
		{"exact host beats wildcard", Match{Host: "www.example.org"}, Match{Host: "*.a.b.c.example.org"}},
		{"longer wildcard suffix beats shorter", Match{Host: "*.a.example.org"}, Match{Host: "*.example.org"}},
		{"single ip beats prefix", Match{IP: netip.MustParsePrefix("10.0.0.1/32")}, Match{IP: netip.MustParsePrefix("10.0.0.0/31")}},
		{"narrower prefix beats wider", Match{IP: netip.MustParsePrefix("10.0.0.0/24")}, Match{IP: netip.MustParsePrefix("10.0.0.0/8")}},
		{"narrow v6 prefix beats wide", Match{IP: netip.MustParsePrefix("2001:db8::/64")}, Match{IP: netip.MustParsePrefix("2001:db8::/32")}},
		{"single port beats range", Match{Port: PortRange{443, 443}}, Match{Port: PortRange{443, 444}}},
		{"narrow range beats wide", Match{Port: PortRange{8000, 8010}}, Match{Port: PortRange{1, 65535}}},
		{"exact cmdline beats glob", Match{Cmdline: "curl x"}, Match{Cmdline: "curl *"}},
		{"exact unit beats glob", Match{Unit: "sshd.service"}, Match{Unit: "*.service"}},
		{"app rule beats generic rule", Match{Exe: "/usr/bin/ssh", Port: PortRange{22, 22}},
			Match{Direction: DirectionOut, Proto: ProtoTCP, Port: PortRange{22, 22}}},
		{"proto beats any", Match{Proto: ProtoTCP}, Match{Proto: ProtoAny}},
		{"anything beats the catch-all", Match{Iface: "eth0"}, Match{}},
	}
	for _, p := range pairs {
		if m, l := p.more.Specificity(), p.less.Specificity(); m <= l {
			t.Errorf("%s: %d <= %d", p.name, m, l)
		}
	}
	if s := (Match{}).Specificity(); s != 0 {
		t.Errorf("empty match specificity %d, want 0", s)
	}
}

// TestSpecificityMonotonic: adding any field to a match makes it more
// specific.
func TestSpecificityMonotonic(t *testing.T) {
	add := []func(*Match){
		func(m *Match) { m.Exe = "/usr/bin/*" },
		func(m *Match) { m.ExeSHA256 = strings.Repeat("0", 64) },
		func(m *Match) { m.Cmdline = "x *" },
		func(m *Match) { m.Unit = "*.service" },
		func(m *Match) { m.UID = u32(1000) },
		func(m *Match) { m.GID = u32(100) },
		func(m *Match) { m.Direction = DirectionIn },
		func(m *Match) { m.Proto = ProtoUDP },
		func(m *Match) { m.Host = "*.org" },
		func(m *Match) { m.IP = netip.MustParsePrefix("::/0") },
		func(m *Match) { m.Port = PortRange{1, 65535} },
		func(m *Match) { m.LocalPort = PortRange{1, 65535} },
		func(m *Match) { m.Iface = "lo" },
	}
	// Walk every subset of fields in order of inclusion.
	for mask := 0; mask < 1<<len(add); mask++ {
		var m Match
		for i, f := range add {
			if mask&(1<<i) != 0 {
				f(&m)
			}
		}
		base := m.Specificity()
		for i, f := range add {
			if mask&(1<<i) != 0 {
				continue
			}
			more := m
			f(&more)
			if more.Specificity() <= base {
				t.Fatalf("adding field %d to %+v did not raise specificity %d", i, m, base)
			}
		}
	}
}
