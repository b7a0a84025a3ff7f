package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
)

// dnsRules: DNS queries may go out (as the shipped default lets the system
// resolver's do), *.allowed.test may be reached on port A, and
// *.tracker.test is denied there (equal specificity: deny wins).
const dnsRules = `
[[rule]]
name = "dns"
action = "allow"
proto = "udp"
port = 53

[[rule]]
name = "allowed.test"
action = "allow"
host = "*.allowed.test"
proto = "tcp"
port = %d

[[rule]]
name = "trackers"
action = "deny"
host = "*.tracker.test"
proto = "tcp"
port = %d
`

// startDNS runs tgprobe's DNS server on the server address, port 53. Every
// name points at the server itself: the names differ, the address does not.
func (e *env) startDNS() string {
	e.t.Helper()
	srv := e.pair.ServerIP4.String()
	addr := net.JoinHostPort(srv, "53")
	p := startProc(e.t, "ip", "netns", "exec", e.pair.Server, filepath.Join(e.bin, "tgprobe"), "dns-serve", "-addr", addr,
		"-a", "www.allowed.test="+srv, "-a", "www.allowed.test="+e.pair.ServerIP6.String(),
		"-a", "blocked.test="+srv,
		"-cname", "alias.chain.test=edge.cdn.test", "-cname", "edge.cdn.test=www.allowed.test",
		"-cname", "ads.allowed.test=x.tracker.test", "-a", "x.tracker.test="+srv)
	proctest.WaitFor(e.t, 5*time.Second, "DNS server ready", func() bool { return strings.Contains(p.Output(), "ready") })
	return addr
}

// Rules by name: each connection is named by what its own process
// resolved, so blocked.test is denied though www.allowed.test (allowed) is
// the same address; CNAME chains carry every name, the asked one first.
func TestIntegrationHostRulesByTheProcesssOwnLookup(t *testing.T) {
	e := newEnv(t)
	client := e.probe("client")
	e.writeRules("50-dns.toml", fmt.Sprintf(dnsRules, portA, portA))
	dns := e.startDNS()
	e.start("")
	if !strings.Contains(e.chains(), "--queue-num 7468") {
		t.Fatalf("no DNS answer queue rule:\n%s", e.chains())
	}
	port := fmt.Sprint(portA)
	cases := []struct {
		network, host string
		code          int
		hosts         []string
		rule          string
	}{
		{"tcp4", "www.allowed.test", codeOK, []string{"www.allowed.test"}, "allowed.test"},
		{"tcp4", "blocked.test", codeTimeout, []string{"blocked.test"}, ""},
		{"tcp4", "alias.chain.test", codeOK, []string{"alias.chain.test", "edge.cdn.test", "www.allowed.test"}, "allowed.test"},
		{"tcp4", "ads.allowed.test", codeTimeout, []string{"ads.allowed.test", "x.tracker.test"}, "trackers"},
		{"tcp6", "www.allowed.test", codeOK, []string{"www.allowed.test"}, "allowed.test"}, // AAAA
	}
	for _, tc := range cases {
		e.wantCode(e.connect(e.pair.Client, -1, client, tc.network, net.JoinHostPort(tc.host, port), "-dns", dns), tc.code, tc.network+" "+tc.host)
	}
	// A process that connects by address without looking it up gets the
	// names its user's processes resolved, flagged as a fallback.
	byIP := e.probe("by-ip")
	e.connect(e.pair.Client, -1, byIP, "tcp", e.srv4(portA))

	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit: %v", err)
	}
	if !regexp.MustCompile(`DNS answers read.* answers=([4-9]|\d\d+)`).MatchString(e.daemonLog()) {
		t.Errorf("daemon did not read the DNS answers:\n%s", e.daemonLog())
	}
	// One entry per probe run: a dropped SYN is sent again and decided again.
	var conns []shared.LogEntry
	seen := map[int]bool{}
	sawFallback := false
	for _, le := range e.allLogEntries() {
		c := le.Connection
		if c.Proto != shared.ProtoTCP || c.RemotePort != portA {
			continue
		}
		switch c.Exe {
		case client:
			if !seen[c.PID] {
				seen[c.PID] = true
				conns = append(conns, le)
			}
		case byIP:
			sawFallback = true
			if c.HostSource != "user" || len(c.Hosts) == 0 {
				t.Errorf("connection by address: hosts %q source %q, want its user's names flagged \"user\"", c.Hosts, c.HostSource)
			}
		}
	}
	if !sawFallback {
		t.Error("no log entry for the connection by address")
	}
	if len(conns) != len(cases) {
		t.Fatalf("log has %d connections of the client to port A, want %d: %+v", len(conns), len(cases), conns)
	}
	slices.SortFunc(conns, func(a, b shared.LogEntry) int { return a.Connection.Time.Compare(b.Connection.Time) })
	for i, tc := range cases {
		le := conns[i]
		c := le.Connection
		if !slices.Equal(c.Hosts, tc.hosts) || c.HostSource != "process" {
			t.Errorf("%s: logged hosts %q from %q, want %q from the process", tc.host, c.Hosts, c.HostSource, tc.hosts)
		}
		if want := map[string]netip.Addr{"tcp4": e.pair.ServerIP4, "tcp6": e.pair.ServerIP6}[tc.network]; c.RemoteIP != want {
			t.Errorf("%s %s: remote %v, want %v", tc.network, tc.host, c.RemoteIP, want)
		}
		gotRule := le.Verdict.RuleID
		if tc.rule == "" && gotRule != "" || tc.rule != "" && !strings.HasSuffix(gotRule, ":"+tc.rule) {
			t.Errorf("%s: decided by rule %q (%s), want %q", tc.host, gotRule, le.Verdict.Reason, tc.rule)
		}
		if tc.rule != "" && !strings.Contains(le.Verdict.Reason, "as its own process resolved it") {
			t.Errorf("%s: reason %q does not say which name matched", tc.host, le.Verdict.Reason)
		}
	}
}

// No race: the answer is in the cache before the application can read it,
// so a connection made right after its lookup is named, every time.
func TestIntegrationConnectionRightAfterLookupIsNamed(t *testing.T) {
	e := newEnv(t)
	client := e.probe("repeat-client")
	e.writeRules("50-dns.toml", fmt.Sprintf(dnsRules, portA, portA))
	dns := e.startDNS()
	e.start("")
	const rounds = 1000
	r := e.connect(e.pair.Client, -1, client, "tcp", net.JoinHostPort("www.allowed.test", fmt.Sprint(portA)),
		"-dns", dns, "-repeat", strconv.Itoa(rounds), "-for", "20s")
	m := regexp.MustCompile(`rounds (\d+) ok (\d+) failed (\d+)`).FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("probe said %s", r)
	}
	ran, _ := strconv.Atoi(m[1])
	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit: %v", err)
	}
	total, named := 0, 0
	for _, le := range e.allLogEntries() {
		c := le.Connection
		if c.Exe != client || c.Proto != shared.ProtoTCP || c.RemotePort != portA {
			continue
		}
		total++
		if c.HostSource == "process" && slices.Equal(c.Hosts, []string{"www.allowed.test"}) && le.Verdict.Action == shared.ActionAllow {
			named++
		}
	}
	t.Logf("lookup then connect: %d rounds in one process, %d connections logged, %d named by their own lookup and allowed by the host rule (%s)",
		ran, total, named, strings.TrimSpace(r.out))
	if ran < 100 {
		t.Errorf("only %d rounds ran: %s", ran, r)
	}
	if total != ran || named != ran {
		t.Errorf("%d rounds, %d connections logged, %d named: want all named\n%s", ran, total, named, r)
	}
	if r.code != codeOK {
		t.Errorf("probe: %s", r)
	}
}
