// Package packet decodes the IP packets NFQUEUE hands to the daemon: IPv4 or
// IPv6 (extension headers walked), then the ports of TCP, UDP, UDP-Lite and
// SCTP, the flags of TCP and the type, code and echo id of ICMP and ICMPv6.
//
// It owns the byte-level reading of packets and nothing else. It must stay
// plain Go: no kernel, no allocation on the decode path, no panic and no read
// out of range on any input, however malformed (packets come from outside).
// It does not verify checksums and does not reassemble fragments.
package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// IP protocol numbers Decode knows.
const (
	ProtoHopByHop uint8 = 0   // IPv6 hop-by-hop options
	ProtoICMP     uint8 = 1   // ICMP (IPv4)
	ProtoTCP      uint8 = 6   // TCP
	ProtoUDP      uint8 = 17  // UDP
	ProtoRouting  uint8 = 43  // IPv6 routing header
	ProtoFragment uint8 = 44  // IPv6 fragment header
	ProtoESP      uint8 = 50  // IPsec ESP: encrypted, nothing past it is read
	ProtoAH       uint8 = 51  // IPsec authentication header
	ProtoICMPv6   uint8 = 58  // ICMPv6
	ProtoNoNext   uint8 = 59  // IPv6 "no next header"
	ProtoDstOpts  uint8 = 60  // IPv6 destination options
	ProtoSCTP     uint8 = 132 // SCTP
	ProtoUDPLite  uint8 = 136 // UDP-Lite
)

const (
	maxExtHeaders      = 8 // IPv6 extension headers walked; more is ErrExtHeaders
	ipv4HeaderMin      = 20
	ipv6HeaderLen      = 40
	tcpHeaderMin       = 20
	udpHeaderLen       = 8
	sctpHeaderLen      = 12
	icmpHeaderLen      = 8
	ipv4FlagMF         = 0x2000
	ipv4FragOffsetMask = 0x1fff
	ipv6FragOffsetMask = 0xfff8
	ipv6FlagM          = 0x0001
)

// TCP flag bits as found in Packet.TCPFlags.
const (
	TCPFin uint8 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

// ICMP and ICMPv6 types the helpers name.
const (
	ICMPEchoReply     uint8 = 0
	ICMPEchoRequest   uint8 = 8
	ICMPv6EchoRequest uint8 = 128
	ICMPv6EchoReply   uint8 = 129
)

// Errors returned by Decode. Callers branch on them with errors.Is.
var (
	// ErrShort: the bytes end before a header Decode must read.
	ErrShort = errors.New("packet: truncated header")
	// ErrVersion: the IP version is neither 4 nor 6.
	ErrVersion = errors.New("packet: not IPv4 or IPv6")
	// ErrHeader: a header field contradicts the packet (length below the
	// minimum, TCP data offset below 5, ...).
	ErrHeader = errors.New("packet: malformed header")
	// ErrExtHeaders: more IPv6 extension headers than Decode walks.
	ErrExtHeaders = errors.New("packet: too many IPv6 extension headers")
)

// Packet is what Decode found in one IP packet. The zero value is an empty
// packet; Decode overwrites every field.
type Packet struct {
	Version uint8 // 4 or 6
	// Proto is the IP protocol number of the transport header: for IPv6, the
	// one after the extension headers (ProtoESP or ProtoNoNext when the walk
	// stops there).
	Proto    uint8
	Src, Dst netip.Addr
	// SrcPort and DstPort are set for TCP, UDP, UDP-Lite and SCTP, except in
	// non-first fragments (which carry no transport header).
	SrcPort, DstPort uint16
	TCPFlags         uint8 // TCPSyn, TCPAck, ... (TCP only)
	ICMPType         uint8 // ICMP or ICMPv6 only
	ICMPCode         uint8
	ICMPID           uint16 // echo request/reply identifier; 0 for other types
	// Fragment is true for a fragment of a larger packet: first or not. A
	// non-first fragment has no ports; an IPv6 atomic fragment (offset 0, no
	// more fragments) is a whole packet and not a fragment.
	Fragment bool
	// PayloadOffset is where the transport payload starts in the decoded
	// bytes: past the TCP header and options, the UDP, UDP-Lite, SCTP common
	// or 8-byte ICMP header; for other protocols and non-first fragments,
	// where the transport header starts. Use Payload to slice it safely.
	PayloadOffset int
	// Length is the IP packet length the header states (IPv4 total length,
	// IPv6 40 + payload length). It can exceed the bytes decoded when the
	// queue copied only a prefix of the packet; a zero length field
	// (segmentation offload, jumbograms) is taken as the bytes given.
	Length int
}

// Decode reads the IP packet in b (starting at the IP header, no link layer)
// into p. It never allocates, never panics and never reads past b.
//
// On error p holds what was decoded before the failing header: after an
// error in the transport header, Version, Src, Dst, Proto, Fragment and
// Length are valid, so a caller can still decide on addresses.
func Decode(b []byte, p *Packet) error {
	*p = Packet{}
	if len(b) < 1 {
		return ErrShort
	}
	switch b[0] >> 4 {
	case 4:
		return decode4(b, p)
	case 6:
		return decode6(b, p)
	default:
		return ErrVersion
	}
}

func decode4(b []byte, p *Packet) error {
	p.Version = 4
	if len(b) < ipv4HeaderMin {
		return ErrShort
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < ipv4HeaderMin {
		return ErrHeader
	}
	if len(b) < ihl {
		return ErrShort
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	switch {
	case total == 0: // segmentation offload: the length is the bytes given
		total = len(b)
	case total < ihl:
		return ErrHeader
	}
	p.Length = total
	if total < len(b) {
		b = b[:total] // link-layer padding is not part of the packet
	}
	p.Proto = b[9]
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	frag := binary.BigEndian.Uint16(b[6:8])
	offset := frag & ipv4FragOffsetMask
	p.Fragment = offset != 0 || frag&ipv4FlagMF != 0
	if offset != 0 {
		p.PayloadOffset = ihl
		return nil
	}
	return decodeTransport(b, ihl, p)
}

func decode6(b []byte, p *Packet) error {
	p.Version = 6
	if len(b) < ipv6HeaderLen {
		return ErrShort
	}
	if plen := int(binary.BigEndian.Uint16(b[4:6])); plen != 0 {
		p.Length = ipv6HeaderLen + plen
		if p.Length < len(b) {
			b = b[:p.Length]
		}
	} else { // jumbogram or segmentation offload
		p.Length = len(b)
	}
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next, off := b[6], ipv6HeaderLen
	for n := 0; ; n++ {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDstOpts, ProtoAH, ProtoFragment:
		default:
			p.Proto = next
			return decodeTransport(b, off, p)
		}
		p.Proto = next // until the walk moves past it
		if n == maxExtHeaders {
			return ErrExtHeaders
		}
		if next == ProtoFragment {
			if len(b) < off+8 {
				return ErrShort
			}
			frag := binary.BigEndian.Uint16(b[off+2 : off+4])
			next, off = b[off], off+8
			offset := frag & ipv6FragOffsetMask
			p.Fragment = offset != 0 || frag&ipv6FlagM != 0
			if offset != 0 { // no transport header in a non-first fragment
				p.Proto = next
				p.PayloadOffset = off
				return nil
			}
			continue
		}
		if len(b) < off+2 {
			return ErrShort
		}
		hdrLen := (int(b[off+1]) + 1) * 8 // generic: 8-byte units past the first 8
		if next == ProtoAH {
			hdrLen = (int(b[off+1]) + 2) * 4 // AH: 4-byte units minus 2
		}
		if len(b) < off+hdrLen {
			return ErrShort
		}
		next, off = b[off], off+hdrLen
	}
}

// decodeTransport reads the transport header at b[off:]; p.Proto is set.
func decodeTransport(b []byte, off int, p *Packet) error {
	if off > len(b) {
		return ErrShort
	}
	t := b[off:]
	switch p.Proto {
	case ProtoTCP:
		if len(t) < tcpHeaderMin {
			return ErrShort
		}
		dataOff := int(t[12]>>4) * 4
		if dataOff < tcpHeaderMin {
			return ErrHeader
		}
		if len(t) < dataOff {
			return ErrShort
		}
		p.SrcPort = binary.BigEndian.Uint16(t[0:2])
		p.DstPort = binary.BigEndian.Uint16(t[2:4])
		p.TCPFlags = t[13]
		p.PayloadOffset = off + dataOff
	case ProtoUDP, ProtoUDPLite:
		if len(t) < udpHeaderLen {
			return ErrShort
		}
		p.SrcPort = binary.BigEndian.Uint16(t[0:2])
		p.DstPort = binary.BigEndian.Uint16(t[2:4])
		p.PayloadOffset = off + udpHeaderLen
	case ProtoSCTP:
		if len(t) < sctpHeaderLen {
			return ErrShort
		}
		p.SrcPort = binary.BigEndian.Uint16(t[0:2])
		p.DstPort = binary.BigEndian.Uint16(t[2:4])
		p.PayloadOffset = off + sctpHeaderLen
	case ProtoICMP, ProtoICMPv6:
		if !p.IsICMP() { // ICMPv6 inside IPv4 or the reverse: opaque
			p.PayloadOffset = off
			break
		}
		if len(t) < icmpHeaderLen {
			return ErrShort
		}
		p.ICMPType, p.ICMPCode = t[0], t[1]
		if p.IsICMPEcho() {
			p.ICMPID = binary.BigEndian.Uint16(t[4:6])
		}
		p.PayloadOffset = off + icmpHeaderLen
	default:
		p.PayloadOffset = off
	}
	return nil
}

// HasPorts reports whether the packet carries ports: TCP, UDP, UDP-Lite or
// SCTP with its transport header decoded (not a non-first fragment, not
// truncated) and a port set (port 0 is no port).
func (p *Packet) HasPorts() bool {
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP:
		return p.SrcPort != 0 || p.DstPort != 0
	}
	return false
}

// IsTCP reports whether the transport protocol is TCP.
func (p *Packet) IsTCP() bool { return p.Proto == ProtoTCP }

// IsUDP reports whether the transport protocol is UDP or UDP-Lite.
func (p *Packet) IsUDP() bool { return p.Proto == ProtoUDP || p.Proto == ProtoUDPLite }

// IsICMP reports whether the transport protocol is ICMP or ICMPv6 (the one
// that belongs to the IP version).
func (p *Packet) IsICMP() bool {
	return (p.Version == 4 && p.Proto == ProtoICMP) || (p.Version == 6 && p.Proto == ProtoICMPv6)
}

// IsTCPSYN reports whether the packet opens a TCP connection: SYN without ACK.
func (p *Packet) IsTCPSYN() bool {
	return p.Proto == ProtoTCP && p.TCPFlags&(TCPSyn|TCPAck) == TCPSyn
}

// IsICMPEcho reports whether the packet is an ICMP or ICMPv6 echo request or
// reply (the ones with an identifier in ICMPID).
func (p *Packet) IsICMPEcho() bool {
	switch {
	case p.Version == 4 && p.Proto == ProtoICMP:
		return p.ICMPType == ICMPEchoRequest || p.ICMPType == ICMPEchoReply
	case p.Version == 6 && p.Proto == ProtoICMPv6:
		return p.ICMPType == ICMPv6EchoRequest || p.ICMPType == ICMPv6EchoReply
	}
	return false
}

// Payload returns the transport payload of b, the bytes p was decoded from:
// b[PayloadOffset:] cut at the packet length. It is empty, never out of
// range, when b holds no payload (or is not the slice p came from).
func (p *Packet) Payload(b []byte) []byte {
	end := min(p.Length, len(b))
	if p.PayloadOffset <= 0 || p.PayloadOffset > end {
		return nil
	}
	return b[p.PayloadOffset:end]
}

// String formats the packet for logs: "tcp 10.0.0.1:5000 -> 10.0.0.2:443 [S]".
// It allocates; keep it off the decision path.
func (p *Packet) String() string {
	b := make([]byte, 0, 96)
	b = append(b, ProtoName(p.Proto)...)
	b = append(b, ' ')
	b = appendEndpoint(b, p.Src, p.SrcPort, p.HasPorts())
	b = append(b, " -> "...)
	b = appendEndpoint(b, p.Dst, p.DstPort, p.HasPorts())
	switch {
	case p.Proto == ProtoTCP && p.HasPorts():
		b = append(b, " ["...)
		for i, c := range "FSRPAUEC" {
			if p.TCPFlags&(1<<i) != 0 {
				b = append(b, byte(c))
			}
		}
		b = append(b, ']')
	case p.IsICMP() && p.PayloadOffset != 0:
		b = append(b, " type="...)
		b = strconv.AppendUint(b, uint64(p.ICMPType), 10)
		b = append(b, " code="...)
		b = strconv.AppendUint(b, uint64(p.ICMPCode), 10)
		if p.IsICMPEcho() {
			b = append(b, " id="...)
			b = strconv.AppendUint(b, uint64(p.ICMPID), 10)
		}
	}
	if p.Fragment {
		b = append(b, " frag"...)
	}
	return string(b)
}

func appendEndpoint(b []byte, a netip.Addr, port uint16, withPort bool) []byte {
	if !withPort {
		return a.AppendTo(b)
	}
	if a.Is6() {
		b = append(b, '[')
		b = a.AppendTo(b)
		b = append(b, ']')
	} else {
		b = a.AppendTo(b)
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(port), 10)
}

// ProtoName names an IP protocol number: "tcp", "udp", "icmpv6", ... or the
// number in decimal when Decode does not know it.
func ProtoName(proto uint8) string {
	switch proto {
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoESP:
		return "esp"
	case ProtoAH:
		return "ah"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoNoNext:
		return "none"
	case ProtoSCTP:
		return "sctp"
	case ProtoUDPLite:
		return "udplite"
	}
	return strconv.Itoa(int(proto))
}
