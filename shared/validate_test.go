package shared

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validRule() Rule {
	return Rule{
		ID:       "12",
		Name:     "ssh-out",
		Action:   ActionAllow,
		Lifetime: LifetimeForever,
		Enabled:  true,
		Match: Match{
			Exe:       "/usr/bin/ssh",
			Direction: DirectionOut,
			Proto:     ProtoTCP,
			Port:      PortRange{22, 22},
		},
	}
}

func TestValidateAcceptsGoodRules(t *testing.T) {
	full := validRule()
	full.Lifetime = LifetimeUntil
	full.Until = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	full.Owner = 1000
	full.Priority = -5
	full.Note = "line one\nline two"
	full.Match = Match{
		Exe:       "/usr/lib/*/firefox",
		ExeSHA256: strings.Repeat("ab", 32),
		Cmdline:   "firefox --new-window *",
		Unit:      "app-*.scope",
		UID:       u32(1000),
		GID:       u32(1000),
		Direction: DirectionOut,
		Proto:     ProtoAny,
		Host:      "*.example.org",
		IP:        netip.MustParsePrefix("2001:db8::/32"),
		Port:      PortRange{8000, 8100},
		LocalPort: PortRange{1024, 65535},
		Iface:     "wlp3s0",
	}
	full.Created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	full.Hits = 3
	cases := map[string]Rule{
		"ssh":  validRule(),
		"full": full,
		"catch-all": {
			Action: ActionDeny, Lifetime: LifetimeForever,
		},
		"process": {
			Action: ActionAllow, Lifetime: LifetimeProcess, PID: 4242, PIDStart: 99,
		},
		"session": {Action: ActionReject, Lifetime: LifetimeSession, Session: ":1.42"},
		"host":    {Action: ActionAllow, Lifetime: LifetimeOnce, Match: Match{Host: "xn--bcher-kva.example_1.org"}},
		"single-label-host": {
			Action: ActionAllow, Lifetime: LifetimeForever, Match: Match{Host: "localhost"},
		},
		"ipv4": {Action: ActionAllow, Lifetime: LifetimeForever, Match: Match{IP: netip.MustParsePrefix("192.0.2.7/32")}},
	}
	for name, r := range cases {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	long := strings.Repeat("x", MaxFieldLen+1)
	tests := []struct {
		field string
		edit  func(*Rule)
	}{
		{"id", func(r *Rule) { r.ID = strings.Repeat("i", MaxIDLen+1) }},
		{"id", func(r *Rule) { r.ID = "a\nb" }},
		{"name", func(r *Rule) { r.Name = "\xff" }},
		{"name", func(r *Rule) { r.Name = strings.Repeat("n", MaxNameLen+1) }},
		{"action", func(r *Rule) { r.Action = "" }},
		{"action", func(r *Rule) { r.Action = "accept" }},
		{"lifetime", func(r *Rule) { r.Lifetime = "" }},
		{"lifetime", func(r *Rule) { r.Lifetime = "always" }},
		{"until", func(r *Rule) { r.Lifetime = LifetimeUntil }},
		{"until", func(r *Rule) { r.Until = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"until", func(r *Rule) { r.Lifetime, r.Until = LifetimeUntil, time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"created", func(r *Rule) { r.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"priority", func(r *Rule) { r.Priority = math.MaxInt32 + 1 }},
		{"note", func(r *Rule) { r.Note = long }},
		{"note", func(r *Rule) { r.Note = "a\x00b" }},
		{"exe", func(r *Rule) { r.Match.Exe = "ssh" }},
		{"exe", func(r *Rule) { r.Match.Exe = "*/ssh" }},
		{"exe", func(r *Rule) { r.Match.Exe = "/usr/bin/[" }},
		{"exe", func(r *Rule) { r.Match.Exe = "/" + long }},
		{"exe_sha256", func(r *Rule) { r.Match.ExeSHA256 = strings.Repeat("a", 63) }},
		{"exe_sha256", func(r *Rule) { r.Match.ExeSHA256 = strings.Repeat("A", 64) }},
		{"exe_sha256", func(r *Rule) { r.Match.ExeSHA256 = strings.Repeat("g", 64) }},
		{"cmdline", func(r *Rule) { r.Match.Cmdline = "curl [" }},
		{"cmdline", func(r *Rule) { r.Match.Cmdline = long }},
		{"unit", func(r *Rule) { r.Match.Unit = `x\` }},
		{"unit", func(r *Rule) { r.Match.Unit = "a\tb" }},
		{"direction", func(r *Rule) { r.Match.Direction = "both" }},
		{"proto", func(r *Rule) { r.Match.Proto = "sctp" }},
		{"host", func(r *Rule) { r.Match.Host = "Example.org" }},
		{"host", func(r *Rule) { r.Match.Host = "example.org." }},
		{"host", func(r *Rule) { r.Match.Host = "exa mple.org" }},
		{"host", func(r *Rule) { r.Match.Host = "a..org" }},
		{"host", func(r *Rule) { r.Match.Host = "*" }},
		{"host", func(r *Rule) { r.Match.Host = "*." }},
		{"host", func(r *Rule) { r.Match.Host = "a.*.org" }},
		{"host", func(r *Rule) { r.Match.Host = "**.org" }},
		{"host", func(r *Rule) { r.Match.Host = "-a.org" }},
		{"host", func(r *Rule) { r.Match.Host = "a-.org" }},
		{"host", func(r *Rule) { r.Match.Host = strings.Repeat("a", 64) + ".org" }},
		{"host", func(r *Rule) { r.Match.Host = strings.Repeat("abcdefghi.", 26) + "org" }},
		{"host", func(r *Rule) { r.Match.Host = "192.0.2.7" }},
		{"host", func(r *Rule) { r.Match.Host = "ex/ample.org" }},
		{"ip", func(r *Rule) { r.Match.IP = netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 40) }},
		{"ip", func(r *Rule) { r.Match.IP = netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 8) }},
		{"ip", func(r *Rule) { r.Match.IP = netip.MustParsePrefix("::ffff:10.0.0.1/128") }},
		{"port", func(r *Rule) { r.Match.Port = PortRange{0, 10} }},
		{"port", func(r *Rule) { r.Match.Port = PortRange{10, 9} }},
		{"local_port", func(r *Rule) { r.Match.LocalPort = PortRange{0, 1} }},
		{"iface", func(r *Rule) { r.Match.Iface = "a-very-long-iface" }},
		{"iface", func(r *Rule) { r.Match.Iface = "eth0:1" }},
		{"iface", func(r *Rule) { r.Match.Iface = "et h0" }},
		{"iface", func(r *Rule) { r.Match.Iface = ".." }},
		{"pid", func(r *Rule) { r.PID = -1 }},
		{"pid", func(r *Rule) { r.Lifetime = LifetimeProcess }},
		{"session", func(r *Rule) { r.Session = "a\x01" }},
		{"source", func(r *Rule) { r.Source = long }},
	}
	for i, tt := range tests {
		r := validRule()
		tt.edit(&r)
		err := r.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("case %d (%s): Validate() = %v, want a *FieldError", i, tt.field, err)
			continue
		}
		if fe.Field != tt.field {
			t.Errorf("case %d: error names field %q, want %q (%v)", i, fe.Field, tt.field, err)
		}
		if !strings.HasPrefix(err.Error(), `field "`+tt.field+`": `) {
			t.Errorf("case %d: Error() = %q", i, err.Error())
		}
	}
}

func TestNormalize(t *testing.T) {
	r := Rule{
		Action: ActionDeny,
		Until:  time.Date(2030, 1, 1, 12, 0, 0, 0, time.FixedZone("x", 3600)),
		Match: Match{
			Host:      "WWW.Example.ORG.",
			ExeSHA256: strings.Repeat("AB", 32),
			IP:        netip.MustParsePrefix("::ffff:10.1.2.3/104"),
		},
	}
	r.Normalize()
	if r.Lifetime != LifetimeForever {
		t.Errorf("lifetime %q, want forever", r.Lifetime)
	}
	if r.Match.Host != "www.example.org" {
		t.Errorf("host %q", r.Match.Host)
	}
	if r.Match.ExeSHA256 != strings.Repeat("ab", 32) {
		t.Errorf("sha256 %q", r.Match.ExeSHA256)
	}
	if r.Match.IP != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("ip %v", r.Match.IP)
	}
	if r.Until.Location() != time.UTC || r.Until.Hour() != 11 {
		t.Errorf("until %v", r.Until)
	}
	// Normalize keeps a given lifetime; Validate then judges the rest.
	r.Lifetime = LifetimeUntil
	r.Normalize()
	if r.Lifetime != LifetimeUntil {
		t.Errorf("Normalize changed lifetime to %q", r.Lifetime)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("normalized rule does not validate: %v", err)
	}
}

func TestCmdlineNeedsAnExecutable(t *testing.T) {
	r := Rule{Action: ActionAllow, Lifetime: LifetimeForever, Match: Match{Cmdline: "curl *"}}
	var fe *FieldError
	if err := r.Validate(); !errors.As(err, &fe) || fe.Field != "cmdline" {
		t.Errorf("cmdline alone: %v, want a cmdline FieldError", err)
	}
	for _, m := range []Match{{Cmdline: "curl *", Exe: "/usr/bin/curl"}, {Cmdline: "curl *", ExeSHA256: strings.Repeat("a", 64)}} {
		r.Match = m
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", m, err)
		}
	}
}
