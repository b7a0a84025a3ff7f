package engine

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-fw/tollgate/daemon/dnscache"
	"github.com/tollgate-fw/tollgate/shared"
)

// A host rule decides by the name the connection's own process resolved,
// and the log says which name matched and where it came from.
func TestHostRulesMatchTheNameTheProcessResolved(t *testing.T) {
	names := dnscache.New(dnscache.Options{})
	target := netip.MustParseAddr("10.0.0.2") // where tcpSYN connects
	// curl (pid 100) resolved www.allowed.test, wget (pid 101) blocked.test:
	// the same address.
	names.Insert(dnscache.Owner{PID: 100, UID: 1000}, "www.allowed.test", []dnscache.Record{{Name: "www.allowed.test", Kind: dnscache.KindA, TTL: 60, Addr: target}})
	names.Insert(dnscache.Owner{PID: 101, UID: 1000}, "blocked.test", []dnscache.Record{{Name: "blocked.test", Kind: dnscache.KindA, TTL: 60, Addr: target}})
	allow := shared.Rule{ID: "allowed", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
		Match: shared.Match{Host: "*.allowed.test"}}

	h := newHarness(t, Options{Namer: names}, []shared.Rule{allow})
	h.send(1, curlPort, 443)
	h.send(2, wgetPort, 443)
	if v := h.q.wait(t, 1); v != vAccept {
		t.Errorf("curl to www.allowed.test got %+v, want accept", v)
	}
	if v := h.q.wait(t, 2); v != vDrop {
		t.Errorf("wget to blocked.test (same address) got %+v, want drop", v)
	}
	h.stop()
	for _, le := range h.rec.all() {
		c := le.Connection
		switch c.Exe {
		case "/usr/bin/curl":
			if !slices.Equal(c.Hosts, []string{"www.allowed.test"}) || c.HostSource != "process" {
				t.Errorf("curl's connection named %q from %q", c.Hosts, c.HostSource)
			}
			if !strings.Contains(le.Verdict.Reason, "host www.allowed.test, as its own process resolved it") {
				t.Errorf("reason %q does not say which name matched", le.Verdict.Reason)
			}
		case "/usr/bin/wget":
			if !slices.Equal(c.Hosts, []string{"blocked.test"}) || c.HostSource != "process" {
				t.Errorf("wget's connection named %q from %q", c.Hosts, c.HostSource)
			}
		}
	}
}
