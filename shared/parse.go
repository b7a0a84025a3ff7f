package shared

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseAction parses "allow", "deny" or "reject".
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionAllow, ActionDeny, ActionReject:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q (want allow, deny or reject)", s)
}

// Known reports whether a is one of the defined actions.
func (a Action) Known() bool {
	_, err := ParseAction(string(a))
	return err == nil
}

// ParseLifetime parses "once", "session", "process", "until" or "forever".
func ParseLifetime(s string) (Lifetime, error) {
	switch l := Lifetime(s); l {
	case LifetimeOnce, LifetimeSession, LifetimeProcess, LifetimeUntil, LifetimeForever:
		return l, nil
	}
	return "", fmt.Errorf("unknown lifetime %q (want once, session, process, until or forever)", s)
}

// Known reports whether l is one of the defined lifetimes.
func (l Lifetime) Known() bool {
	_, err := ParseLifetime(string(l))
	return err == nil
}

// ParseDirection parses "out" or "in".
func ParseDirection(s string) (Direction, error) {
	switch d := Direction(s); d {
	case DirectionOut, DirectionIn:
		return d, nil
	}
	return "", fmt.Errorf("unknown direction %q (want out or in)", s)
}

// ParseProto parses "tcp", "udp", "icmp" or "any".
func ParseProto(s string) (Proto, error) {
	switch p := Proto(s); p {
	case ProtoAny, ProtoTCP, ProtoUDP, ProtoICMP:
		return p, nil
	}
	return "", fmt.Errorf("unknown protocol %q (want tcp, udp, icmp or any)", s)
}

// ErrBadPortRange is wrapped by every error of ParsePortRange.
var ErrBadPortRange = errors.New("bad port range")

// ParsePortRange parses a single port ("443") or an inclusive range
// ("8000-8100"). Ports are 1-65535 and the low end must not exceed the high
// end. Use the zero PortRange, not a string, for "any port".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := parsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("%w %q: %v", ErrBadPortRange, s, err)
	}
	if !isRange {
		return PortRange{Lo: l, Hi: l}, nil
	}
	h, err := parsePort(hi)
	if err != nil {
		return PortRange{}, fmt.Errorf("%w %q: %v", ErrBadPortRange, s, err)
	}
	if l > h {
		return PortRange{}, fmt.Errorf("%w %q: low end %d is above high end %d", ErrBadPortRange, s, l, h)
	}
	return PortRange{Lo: l, Hi: h}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("empty port")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %q is not a number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is out of range 1-65535", s)
	}
	if n == 0 {
		return 0, errors.New("port 0 is not a port (1-65535)")
	}
	return uint16(n), nil
}

// String formats r as ParsePortRange reads it: "443" or "8000-8100"; the
// zero range prints as "any".
func (r PortRange) String() string {
	switch {
	case r.IsAny():
		return "any"
	case r.Lo == r.Hi:
		return strconv.FormatUint(uint64(r.Lo), 10)
	default:
		return strconv.FormatUint(uint64(r.Lo), 10) + "-" + strconv.FormatUint(uint64(r.Hi), 10)
	}
}

// IsAny reports whether r is the zero range, which matches every port.
func (r PortRange) IsAny() bool { return r == PortRange{} }

// Contains reports whether port p lies in r. The zero range contains every
// port, port 0 included (ICMP has no ports).
func (r PortRange) Contains(p uint16) bool {
	if r.IsAny() {
		return true
	}
	return r.Lo <= p && p <= r.Hi
}

// Width is the number of ports in r (65536 for the zero range).
func (r PortRange) Width() int {
	if r.IsAny() {
		return 65536
	}
	if r.Lo > r.Hi {
		return 0
	}
	return int(r.Hi) - int(r.Lo) + 1
}

// ParseIP parses a rule's ip field: an address ("192.0.2.7", "2001:db8::1",
// taken as a single-address prefix) or a CIDR ("10.0.0.0/8"). Zones are not
// allowed, IPv4-mapped IPv6 addresses are read as IPv4, and host bits of a
// CIDR are cleared ("10.1.2.3/8" reads as "10.0.0.0/8").
func ParseIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("ip %q: zones are not allowed", s)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("ip %q: %w", s, err)
		}
		return canonicalPrefix(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip %q: %w", s, err)
	}
	return canonicalPrefix(netip.PrefixFrom(a, a.BitLen())), nil
}

// canonicalPrefix unmaps IPv4-mapped IPv6 prefixes and clears host bits.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// FormatIP formats a rule's ip field as ParseIP reads it: a plain address
// for a single-address prefix, CIDR notation otherwise, "" for the invalid
// (unset) prefix.
func FormatIP(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// ParseOwner parses an owner: a decimal uid, or "root" / "system" for
// OwnerSystem.
func ParseOwner(s string) (uint32, error) {
	switch s {
	case "root", "system":
		return OwnerSystem, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("owner %q is neither a uid nor root/system", s)
	}
	return uint32(n), nil
}
