package netfilter

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func u16(v uint16) *uint16 { return &v }

// fakeManager returns a manager over two fake families.
func fakeManager(t *testing.T, opts Options) (*Manager, *fakeTable, *fakeTable) {
	t.Helper()
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := newFakeTable(), newFakeTable()
	m := newManager(opts, testLogger(t), []family{{name: "ipv4", t: v4}, {name: "ipv6", v6: true, t: v6}})
	return m, v4, v6
}

func mustInstall(t *testing.T, m *Manager) {
	t.Helper()
	if err := m.Install(); err != nil {
		t.Fatalf("Install: %v", err)
	}
}

func TestInstallDefaultRules(t *testing.T) {
	m, v4, v6 := fakeManager(t, Options{QueueNum: 7467})
	mustInstall(t, m)
	want4 := `-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N TOLLGATE-OUT
-A OUTPUT -j TOLLGATE-OUT
-A TOLLGATE-OUT -p tcp -m mark --mark 0x100000/0x100000 -j REJECT --reject-with tcp-reset
-A TOLLGATE-OUT -m mark --mark 0x100000/0x100000 -j REJECT --reject-with icmp-port-unreachable
-A TOLLGATE-OUT -o lo -j RETURN
-A TOLLGATE-OUT -p tcp --syn -j NFQUEUE --queue-num 7467
-A TOLLGATE-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467
`
	want6 := `-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N TOLLGATE-OUT
-A OUTPUT -j TOLLGATE-OUT
-A TOLLGATE-OUT -p tcp -m mark --mark 0x100000/0x100000 -j REJECT --reject-with tcp-reset
-A TOLLGATE-OUT -m mark --mark 0x100000/0x100000 -j REJECT --reject-with icmp6-port-unreachable
-A TOLLGATE-OUT -o lo -j RETURN
-A TOLLGATE-OUT -p ipv6-icmp -m icmp6 ! --icmpv6-type 128 -j RETURN
-A TOLLGATE-OUT -p tcp --syn -j NFQUEUE --queue-num 7467
-A TOLLGATE-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467
`
	if got := v4.dump(); got != want4 {
		t.Errorf("ipv4 rules:\n%s\nwant:\n%s", got, want4)
	}
	if got := v6.dump(); got != want6 {
		t.Errorf("ipv6 rules:\n%s\nwant:\n%s", got, want6)
	}
}

func TestInstallInboundWithDNSRules(t *testing.T) {
	m, v4, v6 := fakeManager(t, Options{QueueNum: 7467, DNSQueueNum: u16(7468), Inbound: true, RejectMark: 0x4000})
	mustInstall(t, m)
	want4 := `-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N TOLLGATE-OUT
-N TOLLGATE-IN
-A INPUT -j TOLLGATE-IN
-A OUTPUT -j TOLLGATE-OUT
-A TOLLGATE-OUT -p tcp -m mark --mark 0x4000/0x4000 -j REJECT --reject-with tcp-reset
-A TOLLGATE-OUT -m mark --mark 0x4000/0x4000 -j REJECT --reject-with icmp-port-unreachable
-A TOLLGATE-OUT -o lo -j RETURN
-A TOLLGATE-OUT -p tcp --syn -j NFQUEUE --queue-num 7467
-A TOLLGATE-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467
-A TOLLGATE-IN -p tcp -m mark --mark 0x4000/0x4000 -j REJECT --reject-with tcp-reset
-A TOLLGATE-IN -m mark --mark 0x4000/0x4000 -j REJECT --reject-with icmp-port-unreachable
-A TOLLGATE-IN -p udp -m udp --sport 53 -m conntrack ! --ctstate NEW -j NFQUEUE --queue-num 7468 --queue-bypass
-A TOLLGATE-IN -i lo -j RETURN
-A TOLLGATE-IN -p tcp --syn -j NFQUEUE --queue-num 7467
-A TOLLGATE-IN -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467
`
	if got := v4.dump(); got != want4 {
		t.Errorf("ipv4 rules:\n%s\nwant:\n%s", got, want4)
	}
	in6, err := v6.List("filter", ChainIn)
	if err != nil {
		t.Fatal(err)
	}
	want6 := []string{
		"-N TOLLGATE-IN",
		"-A TOLLGATE-IN -p tcp -m mark --mark 0x4000/0x4000 -j REJECT --reject-with tcp-reset",
		"-A TOLLGATE-IN -m mark --mark 0x4000/0x4000 -j REJECT --reject-with icmp6-port-unreachable",
		"-A TOLLGATE-IN -p udp -m udp --sport 53 -m conntrack ! --ctstate NEW -j NFQUEUE --queue-num 7468 --queue-bypass",
		"-A TOLLGATE-IN -i lo -j RETURN",
		"-A TOLLGATE-IN -p ipv6-icmp -m icmp6 ! --icmpv6-type 128 -j RETURN",
		"-A TOLLGATE-IN -p tcp --syn -j NFQUEUE --queue-num 7467",
		"-A TOLLGATE-IN -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467",
	}
	if !slices.Equal(in6, want6) {
		t.Errorf("ipv6 %s:\n%s\nwant:\n%s", ChainIn, strings.Join(in6, "\n"), strings.Join(want6, "\n"))
	}
}

// chainText returns the rules of chain in both families, one per line.
func chainText(t *testing.T, fams ...*fakeTable) string {
	t.Helper()
	var b strings.Builder
	for _, f := range fams {
		for _, c := range []string{ChainOut, ChainIn} {
			if !f.has(c) {
				continue
			}
			lines, err := f.List("filter", c)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(strings.Join(lines, "\n") + "\n")
		}
	}
	return b.String()
}

func TestInstallOptionsShapeRules(t *testing.T) {
	queueRule := "-m conntrack --ctstate NEW -j NFQUEUE --queue-num 9"
	for _, tc := range []struct {
		name      string
		opts      Options
		want      []string // lines that must be present (both families unless marked)
		forbidden []string // substrings that must appear nowhere
	}{
		{
			name:      "fail-closed has no bypass on the connection queue",
			opts:      Options{QueueNum: 9, Inbound: true},
			want:      []string{"-A TOLLGATE-OUT " + queueRule, "-A TOLLGATE-IN " + queueRule},
			forbidden: []string{"--queue-bypass"},
		},
		{
			name: "fail-open bypasses in both directions",
			opts: Options{QueueNum: 9, Inbound: true, FailOpen: true},
			want: []string{"-A TOLLGATE-OUT " + queueRule + " --queue-bypass", "-A TOLLGATE-IN " + queueRule + " --queue-bypass"},
		},
		{
			name:      "intercepted loopback has no early return",
			opts:      Options{QueueNum: 9, Inbound: true, InterceptLoopback: true},
			want:      []string{"-A TOLLGATE-OUT " + queueRule, "-A TOLLGATE-IN " + queueRule},
			forbidden: []string{" lo "},
		},
		{
			name:      "outbound only has no inbound chain",
			opts:      Options{QueueNum: 9},
			want:      []string{"-A TOLLGATE-OUT -o lo -j RETURN", "-A TOLLGATE-OUT " + queueRule},
			forbidden: []string{ChainIn, "-A INPUT"},
		},
		{
			name: "DNS without inbound: the inbound chain only queues answers, never NEW packets",
			opts: Options{QueueNum: 9, DNSQueueNum: u16(10)},
			want: []string{
				"-A TOLLGATE-IN -p udp -m udp --sport 53 -m conntrack ! --ctstate NEW -j NFQUEUE --queue-num 10 --queue-bypass",
				"-A TOLLGATE-OUT " + queueRule,
			},
			forbidden: []string{"-i lo", "-A TOLLGATE-IN " + queueRule},
		},
		{
			name: "DNS answers get the bypass even fail-closed",
			opts: Options{QueueNum: 9, DNSQueueNum: u16(0), Inbound: true},
			want: []string{"-A TOLLGATE-IN -p udp -m udp --sport 53 -m conntrack ! --ctstate NEW -j NFQUEUE --queue-num 0 --queue-bypass"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, v4, v6 := fakeManager(t, tc.opts)
			mustInstall(t, m)
			for _, f := range []*fakeTable{v4, v6} {
				text := f.dump()
				lines := strings.Split(text, "\n")
				for _, w := range tc.want {
					if !slices.Contains(lines, w) {
						t.Errorf("missing %q in:\n%s", w, text)
					}
				}
				for _, bad := range tc.forbidden {
					if strings.Contains(text, bad) {
						t.Errorf("found %q in:\n%s", bad, text)
					}
				}
			}
		})
	}
}

// TestInstallOrder checks the order inside the chains: reject first (a
// repeated packet must meet it before anything else), DNS answers before
// the loopback return, the ICMPv6 return before the queue.
func TestInstallOrder(t *testing.T) {
	m, v4, v6 := fakeManager(t, Options{QueueNum: 1, DNSQueueNum: u16(2), Inbound: true})
	mustInstall(t, m)
	for _, f := range []*fakeTable{v4, v6} {
		for _, c := range []string{ChainOut, ChainIn} {
			lines, err := f.List("filter", c)
			if err != nil {
				t.Fatal(err)
			}
			pos := func(sub string) int {
				return slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, sub) })
			}
			rejectTCP, reject := pos("--reject-with tcp-reset"), pos("port-unreachable")
			dns, lo, icmp6, queue := pos("--sport 53"), pos(" lo "), pos("icmpv6-type"), pos("--queue-num 1")
			syn := pos("--syn")
			if rejectTCP != 1 || reject != 2 {
				t.Errorf("%s: reject rules not first:\n%s", c, strings.Join(lines, "\n"))
			}
			if c == ChainIn && !(dns > reject && dns < lo) {
				t.Errorf("%s: DNS rule not between reject and loopback:\n%s", c, strings.Join(lines, "\n"))
			}
			// The queue rules come last: every TCP SYN, then anything NEW.
			if lo < 0 || syn != len(lines)-2 || queue != syn || !strings.Contains(lines[len(lines)-1], "--ctstate NEW -j NFQUEUE --queue-num 1") || lo > queue {
				t.Errorf("%s: loopback return must precede the queue rules, which are last:\n%s", c, strings.Join(lines, "\n"))
			}
			if f == v6 && !(icmp6 > 0 && icmp6 < queue) {
				t.Errorf("%s: ICMPv6 return must precede the queue:\n%s", c, strings.Join(lines, "\n"))
			}
			if f == v4 && icmp6 >= 0 {
				t.Errorf("%s: ICMPv6 rule in IPv4", c)
			}
		}
	}
}

func TestInstallTwiceIsIdempotent(t *testing.T) {
	m, v4, v6 := fakeManager(t, Options{QueueNum: 7, DNSQueueNum: u16(8), Inbound: true})
	mustInstall(t, m)
	once4, once6 := v4.dump(), v6.dump()
	mustInstall(t, m)
	mustInstall(t, m)
	if got := v4.dump(); got != once4 {
		t.Errorf("ipv4 after three installs:\n%s\nafter one:\n%s", got, once4)
	}
	if got := v6.dump(); got != once6 {
		t.Errorf("ipv6 after three installs:\n%s\nafter one:\n%s", got, once6)
	}
	for _, f := range []*fakeTable{v4, v6} {
		for _, h := range hooks {
			jumps, err := findJumps(f, h.builtin, h.chain)
			if err != nil {
				t.Fatal(err)
			}
			if len(jumps) != 1 || jumps[0].id != 1 {
				t.Errorf("jumps from %s to %s: %+v, want exactly one at 1", h.builtin, h.chain, jumps)
			}
		}
	}
}

// staleTable is what a crashed run with other options, a buggy older
// version and other software could leave: our chains with other rules,
// duplicate and misplaced jumps, a jump with extra matches, and foreign
// rules that must survive untouched and in order.
func staleTable(t *testing.T) *fakeTable {
	t.Helper()
	f := newFakeTable()
	steps := []error{
		f.NewChain("filter", "FOREIGN"),
		f.Append("filter", "FOREIGN", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"),
		f.Append("filter", "OUTPUT", "-j", "FOREIGN"),
		f.NewChain("filter", ChainOut),
		f.Append("filter", ChainOut, "-m", "conntrack", "--ctstate", "NEW", "-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"),
		f.Append("filter", "OUTPUT", "-j", ChainOut),
		f.Append("filter", "OUTPUT", "-d", "192.0.2.1", "-j", "DROP"),
		f.Append("filter", "OUTPUT", "-j", ChainOut),
		f.NewChain("filter", ChainIn),
		f.Append("filter", ChainIn, "-m", "conntrack", "--ctstate", "NEW", "-j", "NFQUEUE", "--queue-num", "3"),
		f.Append("filter", "INPUT", "-p", "tcp", "-j", ChainIn),
		f.Append("filter", "INPUT", "-i", "eth9", "-j", "DROP"),
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestInstallReplacesStale(t *testing.T) {
	for _, inbound := range []bool{false, true} {
		t.Run(fmt.Sprintf("inbound=%v", inbound), func(t *testing.T) {
			opts := Options{QueueNum: 7467, Inbound: inbound}

			// What a clean install looks like next to the foreign rules.
			clean := newFakeTable()
			if err := errors.Join(
				clean.NewChain("filter", "FOREIGN"),
				clean.Append("filter", "FOREIGN", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"),
				clean.Append("filter", "OUTPUT", "-j", "FOREIGN"),
				clean.Append("filter", "OUTPUT", "-d", "192.0.2.1", "-j", "DROP"),
				clean.Append("filter", "INPUT", "-i", "eth9", "-j", "DROP"),
			); err != nil {
				t.Fatal(err)
			}
			cm, _, _ := fakeManager(t, opts)
			cm.fams = []family{{name: "ipv4", t: clean}}
			mustInstall(t, cm)

			stale := staleTable(t)
			m, _, _ := fakeManager(t, opts)
			m.fams = []family{{name: "ipv4", t: stale}}
			mustInstall(t, m)

			got, want := stale.dump(), clean.dump()
			// Chains are created in another order; compare rules only.
			if g, w := rulesOnly(got), rulesOnly(want); g != w {
				t.Errorf("after install over stale rules:\n%s\nwant (as a clean install):\n%s", g, w)
			}
			if !inbound && stale.has(ChainIn) {
				t.Errorf("stale %s kept although inbound is off:\n%s", ChainIn, got)
			}
		})
	}
}

func rulesOnly(dump string) string {
	var keep []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.HasPrefix(l, "-A ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestReinstallNeverOpensAGap watches every intermediate state while a
// stale install is replaced: whenever something jumps to our chain, the
// chain must still hold a connection-queue rule, and the jump must not
// vanish in between (no packet may slip through unqueued).
func TestReinstallNeverOpensAGap(t *testing.T) {
	f := staleTable(t)
	m, _, _ := fakeManager(t, Options{QueueNum: 7467, Inbound: true})
	m.fams = []family{{name: "ipv4", t: f}}
	states := 0
	f.changed = func(f *fakeTable) {
		states++
		for _, h := range hooks {
			jumps, err := findJumps(f, h.builtin, h.chain)
			if err != nil {
				t.Fatalf("state %d: %v", states, err)
			}
			if len(jumps) == 0 {
				t.Errorf("state %d: no jump from %s to %s:\n%s", states, h.builtin, h.chain, f.dump())
				continue
			}
			if !slices.ContainsFunc(f.rules[h.chain], func(r string) bool {
				return strings.Contains(r, "--ctstate NEW -j NFQUEUE")
			}) {
				t.Errorf("state %d: %s is jumped to but queues nothing:\n%s", states, h.chain, f.dump())
			}
		}
	}
	mustInstall(t, m)
	if states == 0 {
		t.Fatal("install changed nothing")
	}
}

func TestRemoveLeavesNothing(t *testing.T) {
	m, v4, v6 := fakeManager(t, Options{QueueNum: 7, DNSQueueNum: u16(8), Inbound: true})
	for _, f := range []*fakeTable{v4, v6} {
		if err := errors.Join(
			f.Append("filter", "OUTPUT", "-d", "192.0.2.1", "-j", "DROP"),
			f.Append("filter", "INPUT", "-i", "eth9", "-j", "DROP"),
		); err != nil {
			t.Fatal(err)
		}
	}
	before4, before6 := v4.dump(), v6.dump()
	mustInstall(t, m)
	for range 2 { // the second time there is nothing left to remove
		if err := m.Remove(); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if got := v4.dump(); got != before4 {
			t.Errorf("ipv4 after Remove:\n%s\nwant:\n%s", got, before4)
		}
		if got := v6.dump(); got != before6 {
			t.Errorf("ipv6 after Remove:\n%s\nwant:\n%s", got, before6)
		}
	}
}

// TestRemoveIgnoresOptions: `tollgated --cleanup` with today's options must
// also remove what a run with other options installed.
func TestRemoveIgnoresOptions(t *testing.T) {
	f := staleTable(t)
	m, _, _ := fakeManager(t, Options{QueueNum: 1}) // inbound off
	m.fams = []family{{name: "ipv4", t: f}}
	if err := m.Remove(); err != nil {
		t.Fatal(err)
	}
	if dump := f.dump(); strings.Contains(dump, "TOLLGATE") {
		t.Errorf("left after Remove:\n%s", dump)
	}
	if dump := f.dump(); !strings.Contains(dump, "-A FOREIGN -p tcp --dport 22 -j ACCEPT") ||
		!strings.Contains(dump, "-A INPUT -i eth9 -j DROP") {
		t.Errorf("foreign rules touched:\n%s", dump)
	}
}

func TestRemoveCarriesOnAndJoinsErrors(t *testing.T) {
	m, v4, v6 := fakeManager(t, Options{QueueNum: 7, Inbound: true})
	mustInstall(t, m)
	v4.fail = func(op, chain string) error {
		if op == "DeleteChain" && chain == ChainOut {
			return errors.New("device busy")
		}
		return nil
	}
	err := m.Remove()
	if err == nil || !strings.Contains(err.Error(), "ipv4: remove chain TOLLGATE-OUT: delete chain: device busy") {
		t.Fatalf("Remove error = %v", err)
	}
	if strings.Contains(v6.dump(), "TOLLGATE") {
		t.Errorf("ipv6 not cleaned after an ipv4 failure:\n%s", v6.dump())
	}
	if v4.has(ChainIn) {
		t.Errorf("ipv4 %s not removed after %s failed", ChainIn, ChainOut)
	}
}

func TestInstallErrorSaysWhat(t *testing.T) {
	m, _, v6 := fakeManager(t, Options{QueueNum: 7})
	v6.fail = func(op, chain string) error {
		if op == "Append" {
			return errors.New("no such target")
		}
		return nil
	}
	err := m.Install()
	want := "ipv6: install chain TOLLGATE-OUT: append rule 1 (-p tcp -m mark --mark 0x100000/0x100000 -j REJECT --reject-with tcp-reset): no such target"
	if err == nil || err.Error() != want {
		t.Fatalf("Install error = %v\nwant %s", err, want)
	}
}

func TestInstalled(t *testing.T) {
	m, v4, _ := fakeManager(t, Options{QueueNum: 7, Inbound: true})
	check := func(want bool) {
		t.Helper()
		got, err := m.Installed()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Installed() = %v, want %v", got, want)
		}
	}
	check(false)
	mustInstall(t, m)
	check(true)
	jumps, err := findJumps(v4, "INPUT", ChainIn)
	if err != nil || len(jumps) != 1 {
		t.Fatalf("jumps %v, %v", jumps, err)
	}
	if err := v4.DeleteById("filter", "INPUT", jumps[0].id); err != nil {
		t.Fatal(err)
	}
	check(false) // the chain is there but nothing enters it
	mustInstall(t, m)
	check(true)
	if err := m.Remove(); err != nil {
		t.Fatal(err)
	}
	check(false)
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{RejectMark: 0x3},
		{RejectMark: 0xffffffff},
		{Backend: "iptables"},
		{Backend: "NFT"},
		{QueueNum: 5, DNSQueueNum: u16(5)},
		{LockWait: -time.Second},
	} {
		if _, err := o.withDefaults(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: error %v, want ErrInvalidOptions", o, err)
		}
	}
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.RejectMark != DefaultRejectMark || o.Backend != BackendAuto || o.LockWait != DefaultLockWait {
		t.Errorf("defaults: %+v", o)
	}
	for _, tc := range []struct {
		wait time.Duration
		want int
	}{{time.Nanosecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2}, {DefaultLockWait, 10}} {
		if got := (Options{LockWait: tc.wait}).lockWaitSeconds(); got != tc.want {
			t.Errorf("lockWaitSeconds(%s) = %d, want %d", tc.wait, got, tc.want)
		}
	}
}

// fakeEnv records which commands New opened.
type fakeEnv struct {
	ipv6    bool
	missing string // command that is not installed
	opened  []string
	tables  map[string]*fakeTable
}

func (e *fakeEnv) env() environment {
	return environment{
		open: func(command string, v6 bool, lockWaitSeconds int) (ruleTable, error) {
			if command == e.missing {
				return nil, fmt.Errorf("exec: %q: executable file not found in $PATH", command)
			}
			if lockWaitSeconds < 1 {
				return nil, fmt.Errorf("lock wait %d would wait forever", lockWaitSeconds)
			}
			if strings.HasPrefix(command, "ip6") != v6 {
				return nil, fmt.Errorf("%s opened for the wrong family", command)
			}
			e.opened = append(e.opened, command)
			if e.tables == nil {
				e.tables = map[string]*fakeTable{}
			}
			e.tables[command] = newFakeTable()
			return e.tables[command], nil
		},
		ipv6Enabled: func() bool { return e.ipv6 },
	}
}

func TestNewBackendsAndIPv6(t *testing.T) {
	for _, tc := range []struct {
		backend string
		want    []string
	}{
		{"", []string{"iptables", "ip6tables"}},
		{BackendAuto, []string{"iptables", "ip6tables"}},
		{BackendNFT, []string{"iptables-nft", "ip6tables-nft"}},
		{BackendLegacy, []string{"iptables-legacy", "ip6tables-legacy"}},
	} {
		e := &fakeEnv{ipv6: true}
		m, err := newWith(Options{Backend: tc.backend}, testLogger(t), e.env())
		if err != nil {
			t.Fatalf("backend %q: %v", tc.backend, err)
		}
		if !slices.Equal(e.opened, tc.want) || !m.IPv6() {
			t.Errorf("backend %q opened %v (ipv6 %v), want %v", tc.backend, e.opened, m.IPv6(), tc.want)
		}
	}

	t.Run("kernel without IPv6 installs IPv4 only", func(t *testing.T) {
		e := &fakeEnv{ipv6: false, missing: "ip6tables"}
		m, err := newWith(Options{QueueNum: 1}, testLogger(t), e.env())
		if err != nil {
			t.Fatal(err)
		}
		if m.IPv6() || !slices.Equal(e.opened, []string{"iptables"}) {
			t.Fatalf("ipv6 %v, opened %v", m.IPv6(), e.opened)
		}
		mustInstall(t, m)
		if !strings.Contains(e.tables["iptables"].dump(), "-A OUTPUT -j TOLLGATE-OUT") {
			t.Errorf("ipv4 not installed:\n%s", e.tables["iptables"].dump())
		}
	})

	t.Run("kernel with IPv6 but no ip6tables is an error", func(t *testing.T) {
		e := &fakeEnv{ipv6: true, missing: "ip6tables-legacy"}
		_, err := newWith(Options{Backend: BackendLegacy}, testLogger(t), e.env())
		if !errors.Is(err, ErrIPv6Unavailable) || !strings.Contains(err.Error(), "ip6tables-legacy") {
			t.Fatalf("error %v, want ErrIPv6Unavailable naming ip6tables-legacy", err)
		}
	})

	t.Run("missing iptables says which", func(t *testing.T) {
		e := &fakeEnv{ipv6: true, missing: "iptables-nft"}
		_, err := newWith(Options{Backend: BackendNFT}, testLogger(t), e.env())
		if err == nil || !strings.Contains(err.Error(), "open iptables-nft (backend nft)") {
			t.Fatalf("error %v", err)
		}
	})

	t.Run("invalid options", func(t *testing.T) {
		e := &fakeEnv{ipv6: true}
		if _, err := newWith(Options{RejectMark: 6}, testLogger(t), e.env()); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("error %v", err)
		}
		if len(e.opened) != 0 {
			t.Errorf("opened %v for invalid options", e.opened)
		}
	})
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		want rule
	}{
		{"-P OUTPUT ACCEPT", false, rule{}},
		{"-N TOLLGATE-OUT", false, rule{}},
		{"", false, rule{}},
		{"-A", false, rule{}},
		{"-A OUTPUT -j TOLLGATE-OUT", true, rule{chain: "OUTPUT", target: "TOLLGATE-OUT", plain: true}},
		{"-A OUTPUT -j TOLLGATE-OUT -c 10 600", true, rule{chain: "OUTPUT", target: "TOLLGATE-OUT", plain: true}},
		{"-A OUTPUT -g TOLLGATE-OUT", true, rule{chain: "OUTPUT", target: "TOLLGATE-OUT", plain: true}},
		{"-A OUTPUT -p tcp -j TOLLGATE-OUT", true, rule{chain: "OUTPUT", target: "TOLLGATE-OUT"}},
		{"-A OUTPUT -o lo -j RETURN", true, rule{chain: "OUTPUT", target: "RETURN"}},
		{"-A OUTPUT -d 192.0.2.1", true, rule{chain: "OUTPUT"}},
		{`-A OUTPUT -m comment --comment "x -j TOLLGATE-OUT" -j ACCEPT`, true, rule{chain: "OUTPUT", target: "ACCEPT"}},
		{`-A OUTPUT -m comment --comment "say \"-j TOLLGATE-OUT\"" -j DROP`, true, rule{chain: "OUTPUT", target: "DROP"}},
		{"-A OUTPUT -j", true, rule{chain: "OUTPUT"}},
	} {
		got, ok := parseRule(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseRule(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseRule feeds `iptables -S` lines, which come from a program
// outside the daemon: parsing must not panic, and without quotes the words
// are exactly the space-separated fields.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"-A OUTPUT -j TOLLGATE-OUT",
		"-A OUTPUT -j TOLLGATE-OUT -c 1 2",
		`-A INPUT -m comment --comment "a \"b\" \\ c" -j ACCEPT`,
		"-P INPUT ACCEPT",
		`-A X "unterminated`,
		"-A X -j",
		"\t-A  X\t-g Y ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := parseRule(line)
		words := splitWords(line)
		if ok != (len(words) >= 2 && words[0] == "-A") {
			t.Fatalf("ok=%v for words %q", ok, words)
		}
		if r.plain && r.target == "" {
			t.Fatalf("plain rule without target: %+v", r)
		}
		if !strings.ContainsAny(line, `"\`) {
			fields := strings.FieldsFunc(line, func(c rune) bool { return c == ' ' || c == '\t' })
			if !slices.Equal(words, fields) && !(len(words) == 0 && len(fields) == 0) {
				t.Fatalf("splitWords(%q) = %q, want %q", line, words, fields)
			}
		}
	})
}

func TestAcceptMarksReturnToTheBuiltinChain(t *testing.T) {
	m, v4, _ := fakeManager(t, Options{QueueNum: 7467, Inbound: true, AcceptMarkOut: 0x200000, AcceptMarkIn: 0x400000})
	mustInstall(t, m)
	got := rulesOnly(v4.dump())
	for _, want := range []string{
		"-A TOLLGATE-OUT -m mark --mark 0x200000/0x200000 -j RETURN\n-A TOLLGATE-OUT -o lo -j RETURN",
		"-A TOLLGATE-IN -m mark --mark 0x400000/0x400000 -j RETURN\n-A TOLLGATE-IN -i lo -j RETURN",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rules lack, in this order:\n%s\ngot:\n%s", want, got)
		}
	}
	// The inbound chain must not return on the outbound bit: a loopback
	// packet allowed on its way out still needs its inbound decision.
	if strings.Contains(got, "TOLLGATE-IN -m mark --mark 0x200000") {
		t.Errorf("inbound chain returns on the outbound accept bit:\n%s", got)
	}
	for _, bad := range []Options{
		{AcceptMarkOut: 0x3},
		{AcceptMarkIn: DefaultRejectMark},
		{AcceptMarkOut: 0x200000, AcceptMarkIn: 0x200000},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: err = %v, want ErrInvalidOptions", bad, err)
		}
	}
}
