package netns

import (
	"fmt"
	"net/netip"
)

// Pair is two namespaces joined by a veth link: Client and Server. Neither
// has a route out; each reaches only the other.
type Pair struct {
	Client, Server         string // namespace names
	ClientIP4, ServerIP4   netip.Addr
	ClientIP6, ServerIP6   netip.Addr
	ClientLink, ServerLink string // interface names inside each namespace
}

// Addresses used on every Pair: a documentation-style private range that
// exists only inside the pair's namespaces.
var (
	pairClient4 = netip.MustParseAddr("10.231.0.1")
	pairServer4 = netip.MustParseAddr("10.231.0.2")
	pairClient6 = netip.MustParseAddr("fd00:7467::1")
	pairServer6 = netip.MustParseAddr("fd00:7467::2")
)

// CreatePair creates a client and a server namespace joined by veth. The
// caller must call Delete, also on failure.
func CreatePair(tag string) (*Pair, error) {
	p := &Pair{
		ClientIP4: pairClient4, ServerIP4: pairServer4,
		ClientIP6: pairClient6, ServerIP6: pairServer6,
		ClientLink: "tg0", ServerLink: "tg1",
	}
	var err error
	if p.Client, err = Create(tag + "c"); err != nil {
		return nil, err
	}
	if p.Server, err = Create(tag + "s"); err != nil {
		p.Delete()
		return nil, err
	}
	steps := [][]string{
		{"ip", "-n", p.Client, "link", "add", p.ClientLink, "type", "veth", "peer", "name", p.ServerLink, "netns", p.Server},
		{"ip", "-n", p.Client, "addr", "add", p.ClientIP4.String() + "/24", "dev", p.ClientLink},
		{"ip", "-n", p.Server, "addr", "add", p.ServerIP4.String() + "/24", "dev", p.ServerLink},
		{"ip", "-n", p.Client, "addr", "add", p.ClientIP6.String() + "/64", "dev", p.ClientLink, "nodad"},
		{"ip", "-n", p.Server, "addr", "add", p.ServerIP6.String() + "/64", "dev", p.ServerLink, "nodad"},
		{"ip", "-n", p.Client, "link", "set", p.ClientLink, "up"},
		{"ip", "-n", p.Server, "link", "set", p.ServerLink, "up"},
	}
	for _, s := range steps {
		if err := Run(s[0], s[1:]...); err != nil {
			p.Delete()
			return nil, fmt.Errorf("build namespace pair: %w", err)
		}
	}
	return p, nil
}

// Delete removes both namespaces (and with them the veth link).
func (p *Pair) Delete() {
	if p.Client != "" {
		Delete(p.Client)
	}
	if p.Server != "" {
		Delete(p.Server)
	}
}
