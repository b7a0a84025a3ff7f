package cli

import (
	"net/netip"
	"testing"

	"github.com/tollgate-fw/tollgate/shared"
)

func TestRulesExplain(t *testing.T) {
	h := newHarness()
	seedRules(h) // r1: curl to example.org:443; r3 matches anything
	r := h.run(t, "rules", "explain", "--exe", "/usr/bin/curl", "--host", "example.org", "--ip", "93.184.216.34", "--port", "443").want(t, ExitOK)
	want := `/usr/bin/curl out -> example.org:443 (93.184.216.34) tcp
rule r1 decides: most specific

matching rules, the first decides:
ID  ACTION  PRIORITY  SPECIFICITY  MATCH                                                                             LOST BY
r1  allow   0         95           exe=/usr/bin/curl proto=tcp host=example.org port=443 (host matched example.org)  -
r3  reject  0         0            (anything)                                                                        less specific
`
	if r.stdout != want {
		t.Errorf("explain:\n%s\nwant:\n%s", r.stdout, want)
	}
	c := h.fake.explained[0]
	if c.Exe != "/usr/bin/curl" || c.RemotePort != 443 || c.Proto != shared.ProtoTCP || c.Direction != shared.DirectionOut ||
		c.RemoteIP != netip.MustParseAddr("93.184.216.34") || len(c.Hosts) != 1 || c.UID != -1 {
		t.Errorf("connection sent: %+v", c)
	}

	j := decodeJSON[map[string]any](t, h.run(t, "rules", "explain", "--json", "--exe", "/bin/true", "--port", "22").want(t, ExitOK).stdout)
	cands := j["candidates"].([]any)
	if len(cands) != 1 || cands[0].(map[string]any)["rule"].(map[string]any)["id"] != "r3" || j["explanation"] == "" {
		t.Errorf("explain --json: %v", j)
	}

	// A connection from the log, by id.
	h.fake.addLog(logEntry(77, testNow, "/usr/bin/curl", shared.ActionDeny, ""))
	h.run(t, "rules", "explain", "77").want(t, ExitOK)
	if c := h.fake.explained[len(h.fake.explained)-1]; c.ID != 77 || c.RemoteIP != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("explain 77 sent %+v", c)
	}
	h.run(t, "rules", "explain", "78").want(t, ExitNotFound)
	h.run(t, "rules", "explain", "x7").want(t, ExitUsage)
	h.run(t, "rules", "explain").want(t, ExitUsage)
	for _, bad := range [][]string{{"--exe", "/x", "--proto", "gre"}, {"--exe", "/x", "--ip", "nope"}, {"--exe", "/x", "--port", "70000"}, {"--exe", "/x", "--direction", "up"}} {
		if r := h.run(t, append([]string{"rules", "explain"}, bad...)...).want(t, ExitUsage); len(r.dials) != 0 {
			t.Errorf("%v reached the daemon", bad)
		}
	}
}
