package packet

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

var (
	src4 = netip.MustParseAddr("10.0.0.1")
	dst4 = netip.MustParseAddr("192.0.2.7")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8:ffff::53")
)

// v4 builds an IPv4 packet around payload with golang.org/x/net/ipv4.
// opts are IP options (a multiple of 4 bytes); flags and fragOff as in the header.
func v4(t testing.TB, proto uint8, opts []byte, flags ipv4.HeaderFlags, fragOff int, payload []byte) []byte {
	t.Helper()
	h := ipv4.Header{
		Version:  4,
		Len:      ipv4.HeaderLen + len(opts),
		TotalLen: ipv4.HeaderLen + len(opts) + len(payload),
		TTL:      64,
		Protocol: int(proto),
		Flags:    flags,
		FragOff:  fragOff,
		Src:      net.IP(src4.AsSlice()),
		Dst:      net.IP(dst4.AsSlice()),
		Options:  opts,
	}
	b, err := h.Marshal()
	if err != nil {
		t.Fatalf("marshal ipv4 header: %v", err)
	}
	return append(b, payload...)
}

// v6 builds an IPv6 packet: next is the first next-header value, rest the
// extension headers and transport bytes that follow the fixed header.
func v6(next uint8, rest []byte) []byte {
	b := make([]byte, 40, 40+len(rest))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:6], uint16(len(rest)))
	b[6] = next
	b[7] = 64
	copy(b[8:24], src6.AsSlice())
	copy(b[24:40], dst6.AsSlice())
	return append(b, rest...)
}

// ext builds an IPv6 extension header in the generic form (length in 8-byte
// units beyond the first 8), padded with zeros.
func ext(next uint8, units int) []byte {
	b := make([]byte, (units+1)*8)
	b[0], b[1] = next, uint8(units)
	return b
}

// ah builds an IPsec AH header (length in 4-byte units minus 2).
func ah(next uint8, words int) []byte {
	b := make([]byte, (words+2)*4)
	b[0], b[1] = next, uint8(words)
	return b
}

// frag6 builds an IPv6 fragment header.
func frag6(next uint8, offset uint16, more bool) []byte {
	b := make([]byte, 8)
	b[0] = next
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:4], v)
	binary.BigEndian.PutUint32(b[4:8], 0xdeadbeef)
	return b
}

func tcp(sport, dport uint16, flags uint8, optWords int, payload []byte) []byte {
	b := make([]byte, 20+optWords*4, 20+optWords*4+len(payload))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	b[12] = uint8(5+optWords) << 4
	b[13] = flags
	return append(b, payload...)
}

func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint16(b[4:6], uint16(8+len(payload)))
	return append(b, payload...)
}

func sctp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 12, 12+len(payload))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	return append(b, payload...)
}

func icmp(typ, code uint8, id uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], 1)
	return append(b, payload...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestDecode(t *testing.T) {
	dns := []byte("dns-query-bytes")
	tcpSyn := tcp(40000, 443, TCPSyn, 0, nil)
	tcpOpts := tcp(40001, 80, TCPSyn|TCPAck, 3, []byte("hello"))

	tests := []struct {
		name    string
		b       []byte
		want    Packet
		payload string // expected Payload(b)
		err     error
	}{
		{
			name: "ipv4 tcp syn",
			b:    v4(t, ProtoTCP, nil, 0, 0, tcpSyn),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: src4, Dst: dst4, SrcPort: 40000, DstPort: 443,
				TCPFlags: TCPSyn, PayloadOffset: 40, Length: 40},
		},
		{
			name: "ipv4 options, tcp options and payload",
			b:    v4(t, ProtoTCP, []byte{1, 1, 1, 0}, ipv4.DontFragment, 0, tcpOpts),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: src4, Dst: dst4, SrcPort: 40001, DstPort: 80,
				TCPFlags: TCPSyn | TCPAck, PayloadOffset: 24 + 32, Length: 24 + 32 + 5},
			payload: "hello",
		},
		{
			name: "ipv4 udp",
			b:    v4(t, ProtoUDP, nil, 0, 0, udp(53, 5353, dns)),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: src4, Dst: dst4, SrcPort: 53, DstPort: 5353,
				PayloadOffset: 28, Length: 28 + len(dns)},
			payload: string(dns),
		},
		{
			name: "ipv4 udplite",
			b:    v4(t, ProtoUDPLite, nil, 0, 0, udp(1000, 2000, []byte("x"))),
			want: Packet{Version: 4, Proto: ProtoUDPLite, Src: src4, Dst: dst4, SrcPort: 1000, DstPort: 2000,
				PayloadOffset: 28, Length: 29},
			payload: "x",
		},
		{
			name: "ipv4 sctp",
			b:    v4(t, ProtoSCTP, nil, 0, 0, sctp(3868, 3869, []byte("chunk"))),
			want: Packet{Version: 4, Proto: ProtoSCTP, Src: src4, Dst: dst4, SrcPort: 3868, DstPort: 3869,
				PayloadOffset: 32, Length: 37},
			payload: "chunk",
		},
		{
			name: "ipv4 icmp echo request",
			b:    v4(t, ProtoICMP, nil, 0, 0, icmp(ICMPEchoRequest, 0, 0x4242, []byte("ping"))),
			want: Packet{Version: 4, Proto: ProtoICMP, Src: src4, Dst: dst4, ICMPType: 8, ICMPID: 0x4242,
				PayloadOffset: 28, Length: 32},
			payload: "ping",
		},
		{
			name: "ipv4 icmp unreachable has no id",
			b:    v4(t, ProtoICMP, nil, 0, 0, icmp(3, 3, 0x4242, nil)),
			want: Packet{Version: 4, Proto: ProtoICMP, Src: src4, Dst: dst4, ICMPType: 3, ICMPCode: 3,
				PayloadOffset: 28, Length: 28},
		},
		{
			name:    "ipv4 icmpv6 protocol number is opaque",
			b:       v4(t, ProtoICMPv6, nil, 0, 0, icmp(ICMPv6EchoRequest, 0, 7, nil)),
			want:    Packet{Version: 4, Proto: ProtoICMPv6, Src: src4, Dst: dst4, PayloadOffset: 20, Length: 28},
			payload: "\x80\x00\x00\x00\x00\x07\x00\x01",
		},
		{
			name:    "ipv4 unknown protocol",
			b:       v4(t, 47, nil, 0, 0, []byte("gre!")),
			want:    Packet{Version: 4, Proto: 47, Src: src4, Dst: dst4, PayloadOffset: 20, Length: 24},
			payload: "gre!",
		},
		{
			name: "ipv4 first fragment has ports",
			b:    v4(t, ProtoUDP, nil, ipv4.MoreFragments, 0, udp(1, 2, []byte("abc"))),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: src4, Dst: dst4, SrcPort: 1, DstPort: 2,
				Fragment: true, PayloadOffset: 28, Length: 31},
			payload: "abc",
		},
		{
			name: "ipv4 later fragment has no ports",
			b:    v4(t, ProtoUDP, nil, 0, 185, udp(1, 2, nil)),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: src4, Dst: dst4, Fragment: true,
				PayloadOffset: 20, Length: 28},
			payload: "\x00\x01\x00\x02\x00\x08\x00\x00", // fragment data, not a UDP header
		},
		{
			name: "ipv4 padding past total length ignored",
			b:    append(v4(t, ProtoUDP, nil, 0, 0, udp(1, 2, []byte("ab"))), 0xff, 0xff, 0xff),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: src4, Dst: dst4, SrcPort: 1, DstPort: 2,
				PayloadOffset: 28, Length: 30},
			payload: "ab",
		},
		{
			name: "ipv4 truncated copy keeps stated length",
			b:    v4(t, ProtoUDP, nil, 0, 0, udp(1, 2, []byte("abcdef")))[:31],
			want: Packet{Version: 4, Proto: ProtoUDP, Src: src4, Dst: dst4, SrcPort: 1, DstPort: 2,
				PayloadOffset: 28, Length: 34},
			payload: "abc",
		},
		{
			name: "ipv4 zero total length (offload) uses bytes given",
			b:    setU16(v4(t, ProtoTCP, nil, 0, 0, tcp(5, 6, TCPAck, 0, []byte("seg"))), 2, 0),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: src4, Dst: dst4, SrcPort: 5, DstPort: 6,
				TCPFlags: TCPAck, PayloadOffset: 40, Length: 43},
			payload: "seg",
		},
		{
			name: "ipv6 tcp syn",
			b:    v6(ProtoTCP, tcp(50000, 22, TCPSyn, 0, nil)),
			want: Packet{Version: 6, Proto: ProtoTCP, Src: src6, Dst: dst6, SrcPort: 50000, DstPort: 22,
				TCPFlags: TCPSyn, PayloadOffset: 60, Length: 60},
		},
		{
			name: "ipv6 udp",
			b:    v6(ProtoUDP, udp(53, 40000, dns)),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: src6, Dst: dst6, SrcPort: 53, DstPort: 40000,
				PayloadOffset: 48, Length: 48 + len(dns)},
			payload: string(dns),
		},
		{
			name: "ipv6 icmpv6 echo",
			b:    v6(ProtoICMPv6, icmp(ICMPv6EchoRequest, 0, 99, nil)),
			want: Packet{Version: 6, Proto: ProtoICMPv6, Src: src6, Dst: dst6, ICMPType: 128, ICMPID: 99,
				PayloadOffset: 48, Length: 48},
		},
		{
			name:    "ipv6 icmp (v4) protocol number is opaque",
			b:       v6(ProtoICMP, icmp(ICMPEchoRequest, 0, 99, nil)),
			want:    Packet{Version: 6, Proto: ProtoICMP, Src: src6, Dst: dst6, PayloadOffset: 40, Length: 48},
			payload: "\x08\x00\x00\x00\x00\x63\x00\x01",
		},
		{
			name: "ipv6 hop-by-hop, routing, dest opts, AH then udp",
			b: v6(ProtoHopByHop, cat(ext(ProtoRouting, 0), ext(ProtoAH, 2), ah(ProtoDstOpts, 4),
				ext(ProtoUDP, 1), udp(7, 8, []byte("z")))),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: src6, Dst: dst6, SrcPort: 7, DstPort: 8,
				PayloadOffset: 40 + 8 + 24 + 24 + 16 + 8, Length: 40 + 8 + 24 + 24 + 16 + 9},
			payload: "z",
		},
		{
			name: "ipv6 first fragment has ports",
			b:    v6(ProtoFragment, cat(frag6(ProtoTCP, 0, true), tcp(1, 2, TCPSyn, 0, nil))),
			want: Packet{Version: 6, Proto: ProtoTCP, Src: src6, Dst: dst6, SrcPort: 1, DstPort: 2,
				TCPFlags: TCPSyn, Fragment: true, PayloadOffset: 68, Length: 68},
		},
		{
			name: "ipv6 later fragment has no ports",
			b:    v6(ProtoDstOpts, cat(ext(ProtoFragment, 0), frag6(ProtoTCP, 100, false), tcp(1, 2, TCPSyn, 0, nil))),
			want: Packet{Version: 6, Proto: ProtoTCP, Src: src6, Dst: dst6, Fragment: true,
				PayloadOffset: 56, Length: 76},
			payload: string(tcp(1, 2, TCPSyn, 0, nil)),
		},
		{
			name: "ipv6 atomic fragment is a whole packet",
			b:    v6(ProtoFragment, cat(frag6(ProtoUDP, 0, false), udp(1, 2, nil))),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: src6, Dst: dst6, SrcPort: 1, DstPort: 2,
				PayloadOffset: 56, Length: 56},
		},
		{
			name:    "ipv6 esp stops the walk",
			b:       v6(ProtoESP, []byte{1, 2, 3, 4, 5, 6, 7, 8}),
			want:    Packet{Version: 6, Proto: ProtoESP, Src: src6, Dst: dst6, PayloadOffset: 40, Length: 48},
			payload: "\x01\x02\x03\x04\x05\x06\x07\x08",
		},
		{
			name: "ipv6 no next header",
			b:    v6(ProtoDstOpts, ext(ProtoNoNext, 0)),
			want: Packet{Version: 6, Proto: ProtoNoNext, Src: src6, Dst: dst6, PayloadOffset: 48, Length: 48},
		},
		{
			name: "ipv6 zero payload length (jumbo/offload) uses bytes given",
			b:    setU16(v6(ProtoUDP, udp(1, 2, []byte("j"))), 4, 0),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: src6, Dst: dst6, SrcPort: 1, DstPort: 2,
				PayloadOffset: 48, Length: 49},
			payload: "j",
		},
		{
			name: "ipv6 eight extension headers is the limit",
			b: v6(ProtoDstOpts, cat(ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0),
				ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0),
				ext(ProtoUDP, 0), udp(1, 2, nil))),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: src6, Dst: dst6, SrcPort: 1, DstPort: 2,
				PayloadOffset: 40 + 64 + 8, Length: 40 + 64 + 8},
		},
		{
			name: "ipv6 nine extension headers",
			b: v6(ProtoDstOpts, cat(ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0),
				ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0), ext(ProtoDstOpts, 0),
				ext(ProtoDstOpts, 0), ext(ProtoUDP, 0), udp(1, 2, nil))),
			want: Packet{Version: 6, Proto: ProtoDstOpts, Src: src6, Dst: dst6, Length: 40 + 72 + 8},
			err:  ErrExtHeaders,
		},
		// Errors.
		{name: "empty", b: nil, err: ErrShort},
		{name: "version 5", b: []byte{0x50, 0, 0, 0}, err: ErrVersion},
		{name: "version 0", b: make([]byte, 60), err: ErrVersion},
		{name: "ipv4 short", b: v4(t, ProtoTCP, nil, 0, 0, nil)[:19], want: Packet{Version: 4}, err: ErrShort},
		{
			name: "ipv4 ihl below 5",
			b:    setByte(v4(t, ProtoTCP, nil, 0, 0, tcpSyn), 0, 0x44),
			want: Packet{Version: 4},
			err:  ErrHeader,
		},
		{
			name: "ipv4 ihl past the bytes",
			b:    setByte(v4(t, ProtoUDP, nil, 0, 0, nil), 0, 0x46),
			want: Packet{Version: 4},
			err:  ErrShort,
		},
		{
			name: "ipv4 total length below header",
			b:    setU16(v4(t, ProtoTCP, nil, 0, 0, tcpSyn), 2, 19),
			want: Packet{Version: 4},
			err:  ErrHeader,
		},
		{
			name: "ipv4 tcp cut short keeps addresses",
			b:    v4(t, ProtoTCP, nil, 0, 0, tcpSyn)[:39],
			want: Packet{Version: 4, Proto: ProtoTCP, Src: src4, Dst: dst4, Length: 40},
			err:  ErrShort,
		},
		{
			name: "ipv4 total length cuts tcp",
			b:    setU16(v4(t, ProtoTCP, nil, 0, 0, tcpSyn), 2, 30),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: src4, Dst: dst4, Length: 30},
			err:  ErrShort,
		},
		{
			name: "tcp data offset below 5",
			b:    v4(t, ProtoTCP, nil, 0, 0, setByte(tcp(1, 2, TCPSyn, 0, nil), 12, 0x40)),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: src4, Dst: dst4, Length: 40},
			err:  ErrHeader,
		},
		{
			name: "tcp options past the bytes",
			b:    v4(t, ProtoTCP, nil, 0, 0, setByte(tcp(1, 2, TCPSyn, 0, nil), 12, 0xf0)),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: src4, Dst: dst4, Length: 40},
			err:  ErrShort,
		},
		{
			name: "udp cut short",
			b:    v4(t, ProtoUDP, nil, 0, 0, []byte{0, 1, 0, 2, 0}),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: src4, Dst: dst4, Length: 25},
			err:  ErrShort,
		},
		{
			name: "sctp cut short",
			b:    v4(t, ProtoSCTP, nil, 0, 0, make([]byte, 11)),
			want: Packet{Version: 4, Proto: ProtoSCTP, Src: src4, Dst: dst4, Length: 31},
			err:  ErrShort,
		},
		{
			name: "icmp cut short",
			b:    v4(t, ProtoICMP, nil, 0, 0, make([]byte, 7)),
			want: Packet{Version: 4, Proto: ProtoICMP, Src: src4, Dst: dst4, Length: 27},
			err:  ErrShort,
		},
		{name: "ipv6 short", b: v6(ProtoTCP, nil)[:39], want: Packet{Version: 6}, err: ErrShort},
		{
			name: "ipv6 extension header past the bytes",
			b:    v6(ProtoHopByHop, setByte(ext(ProtoUDP, 0), 1, 3)),
			want: Packet{Version: 6, Proto: ProtoHopByHop, Src: src6, Dst: dst6, Length: 48},
			err:  ErrShort,
		},
		{
			name: "ipv6 extension header cut in its first bytes",
			b:    v6(ProtoRouting, []byte{ProtoUDP}),
			want: Packet{Version: 6, Proto: ProtoRouting, Src: src6, Dst: dst6, Length: 41},
			err:  ErrShort,
		},
		{
			name: "ipv6 fragment header cut",
			b:    v6(ProtoFragment, frag6(ProtoUDP, 0, true)[:7]),
			want: Packet{Version: 6, Proto: ProtoFragment, Src: src6, Dst: dst6, Length: 47},
			err:  ErrShort,
		},
		{
			name: "ipv6 payload length cuts AH",
			b:    setU16(v6(ProtoAH, cat(ah(ProtoTCP, 4), tcpSyn)), 4, 20),
			want: Packet{Version: 6, Proto: ProtoAH, Src: src6, Dst: dst6, Length: 60},
			err:  ErrShort,
		},
		{
			name: "ipv6 udp cut short",
			b:    v6(ProtoUDP, make([]byte, 7)),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: src6, Dst: dst6, Length: 47},
			err:  ErrShort,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Packet{Proto: 99, SrcPort: 1234, Fragment: true} // stale values must be cleared
			err := Decode(tt.b, &p)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Decode error = %v, want %v", err, tt.err)
			}
			if p != tt.want {
				t.Errorf("Decode =\n  %+v\nwant\n  %+v", p, tt.want)
			}
			if got := string(p.Payload(tt.b)); err == nil && got != tt.payload {
				t.Errorf("Payload = %q, want %q", got, tt.payload)
			}
		})
	}
}

func setByte(b []byte, i int, v byte) []byte {
	b[i] = v
	return b
}

func setU16(b []byte, i int, v uint16) []byte {
	binary.BigEndian.PutUint16(b[i:i+2], v)
	return b
}

func TestHelpers(t *testing.T) {
	decode := func(b []byte) *Packet {
		t.Helper()
		var p Packet
		if err := Decode(b, &p); err != nil {
			t.Fatalf("Decode: %v", err)
		}
		return &p
	}
	syn := decode(v4(t, ProtoTCP, nil, 0, 0, tcp(1000, 443, TCPSyn|TCPEce|TCPCwr, 0, nil)))
	synAck := decode(v6(ProtoTCP, tcp(443, 1000, TCPSyn|TCPAck, 0, nil)))
	udp4 := decode(v4(t, ProtoUDP, nil, 0, 0, udp(5353, 53, nil)))
	lite := decode(v4(t, ProtoUDPLite, nil, 0, 0, udp(5353, 53, nil)))
	ping6 := decode(v6(ProtoICMPv6, icmp(ICMPv6EchoRequest, 0, 1, nil)))
	pong4 := decode(v4(t, ProtoICMP, nil, 0, 0, icmp(ICMPEchoReply, 0, 1, nil)))
	unreach := decode(v4(t, ProtoICMP, nil, 0, 0, icmp(3, 1, 0, nil)))
	later := decode(v4(t, ProtoTCP, nil, 0, 10, tcp(1, 2, TCPSyn, 0, nil)))
	sctp6 := decode(v6(ProtoSCTP, sctp(1, 2, nil)))

	checks := []struct {
		name string
		got  bool
		want bool
	}{
		{"syn IsTCPSYN", syn.IsTCPSYN(), true},
		{"syn-ack IsTCPSYN", synAck.IsTCPSYN(), false},
		{"udp IsTCPSYN", udp4.IsTCPSYN(), false},
		{"syn IsTCP", syn.IsTCP(), true},
		{"udp IsUDP", udp4.IsUDP(), true},
		{"udplite IsUDP", lite.IsUDP(), true},
		{"syn IsUDP", syn.IsUDP(), false},
		{"ping6 IsICMP", ping6.IsICMP(), true},
		{"ping6 IsICMPEcho", ping6.IsICMPEcho(), true},
		{"pong4 IsICMPEcho", pong4.IsICMPEcho(), true},
		{"unreachable IsICMPEcho", unreach.IsICMPEcho(), false},
		{"unreachable IsICMP", unreach.IsICMP(), true},
		{"syn HasPorts", syn.HasPorts(), true},
		{"sctp HasPorts", sctp6.HasPorts(), true},
		{"ping HasPorts", ping6.HasPorts(), false},
		{"later fragment HasPorts", later.HasPorts(), false},
		{"later fragment IsTCPSYN", later.IsTCPSYN(), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	strs := []struct {
		p    *Packet
		want string
	}{
		{syn, "tcp 10.0.0.1:1000 -> 192.0.2.7:443 [SEC]"},
		{synAck, "tcp [2001:db8::1]:443 -> [2001:db8:ffff::53]:1000 [SA]"},
		{udp4, "udp 10.0.0.1:5353 -> 192.0.2.7:53"},
		{ping6, "icmpv6 2001:db8::1 -> 2001:db8:ffff::53 type=128 code=0 id=1"},
		{unreach, "icmp 10.0.0.1 -> 192.0.2.7 type=3 code=1"},
		{later, "tcp 10.0.0.1 -> 192.0.2.7 frag"},
		{&Packet{Version: 4, Proto: 200, Src: src4, Dst: dst4}, "200 10.0.0.1 -> 192.0.2.7"},
	}
	for _, s := range strs {
		if got := s.p.String(); got != s.want {
			t.Errorf("String() = %q, want %q", got, s.want)
		}
	}
}

func TestPayloadNeverOutOfRange(t *testing.T) {
	b := v4(t, ProtoUDP, nil, 0, 0, udp(1, 2, []byte("abcd")))
	var p Packet
	if err := Decode(b, &p); err != nil {
		t.Fatal(err)
	}
	for _, short := range [][]byte{nil, b[:10], b[:28], b[:30]} {
		got := p.Payload(short)
		want := ""
		if len(short) > 28 {
			want = string(short[28:])
		}
		if string(got) != want {
			t.Errorf("Payload(b[:%d]) = %q, want %q", len(short), got, want)
		}
	}
	if got := (&Packet{PayloadOffset: 50, Length: 40}).Payload(make([]byte, 60)); got != nil {
		t.Errorf("Payload with offset past length = %q, want nil", got)
	}
}

// FuzzDecode checks that Decode never panics or reads out of range, and that
// what it reports is consistent with the bytes: offsets inside the packet,
// addresses and protocol as golang.org/x/net reads them.
func FuzzDecode(f *testing.F) {
	seeds := [][]byte{
		v4(f, ProtoTCP, nil, 0, 0, tcp(40000, 443, TCPSyn, 2, nil)),
		v4(f, ProtoUDP, []byte{1, 1, 1, 0}, ipv4.MoreFragments, 0, udp(53, 1, []byte("answer"))),
		v4(f, ProtoICMP, nil, 0, 0, icmp(8, 0, 1, nil)),
		v4(f, ProtoSCTP, nil, 0, 3, nil),
		v6(ProtoHopByHop, cat(ext(ProtoFragment, 1), frag6(ProtoAH, 0, true), ah(ProtoUDPLite, 1), udp(1, 2, nil))),
		v6(ProtoFragment, cat(frag6(ProtoTCP, 8, true), tcp(1, 2, TCPSyn, 0, nil))),
		v6(ProtoICMPv6, icmp(128, 0, 7, []byte("x"))),
		v6(ProtoSCTP, sctp(9, 9, nil)),
		{0x45},
		{0x60},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		err := Decode(b, &p)
		_ = p.String()
		_ = p.Payload(b)
		if err != nil {
			if !errors.Is(err, ErrShort) && !errors.Is(err, ErrVersion) &&
				!errors.Is(err, ErrHeader) && !errors.Is(err, ErrExtHeaders) {
				t.Fatalf("Decode returned an unknown error: %v", err)
			}
			return
		}
		if p.Version != 4 && p.Version != 6 {
			t.Fatalf("Version = %d with no error", p.Version)
		}
		if p.PayloadOffset < 20 || p.PayloadOffset > len(b) || p.PayloadOffset > p.Length {
			t.Fatalf("PayloadOffset %d outside the packet (len %d, Length %d)", p.PayloadOffset, len(b), p.Length)
		}
		switch p.Proto {
		case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP:
		default:
			if p.SrcPort != 0 || p.DstPort != 0 || p.HasPorts() {
				t.Fatalf("ports for a protocol without ports: %+v", p)
			}
		}
		if !p.IsICMP() && (p.ICMPType != 0 || p.ICMPCode != 0 || p.ICMPID != 0) {
			t.Fatalf("ICMP fields for a non-ICMP packet: %+v", p)
		}
		if p.Proto != ProtoTCP && p.TCPFlags != 0 {
			t.Fatalf("TCP flags for a non-TCP packet: %+v", p)
		}
		switch p.Version {
		case 4:
			h, herr := ipv4.ParseHeader(b)
			if herr != nil {
				t.Fatalf("x/net rejects a header Decode accepted: %v", herr)
			}
			if h.Protocol != int(p.Proto) || !h.Src.Equal(p.Src.AsSlice()) || !h.Dst.Equal(p.Dst.AsSlice()) {
				t.Fatalf("Decode %+v disagrees with x/net %v", p, h)
			}
			if frag := h.FragOff != 0 || h.Flags&ipv4.MoreFragments != 0; frag != p.Fragment {
				t.Fatalf("Fragment = %v, x/net header %v", p.Fragment, h)
			}
		case 6:
			h, herr := ipv6.ParseHeader(b)
			if herr != nil {
				t.Fatalf("x/net rejects a header Decode accepted: %v", herr)
			}
			if !h.Src.Equal(p.Src.AsSlice()) || !h.Dst.Equal(p.Dst.AsSlice()) {
				t.Fatalf("Decode %+v disagrees with x/net %v", p, h)
			}
			if p.PayloadOffset < 40 {
				t.Fatalf("IPv6 PayloadOffset %d inside the fixed header", p.PayloadOffset)
			}
		}
	})
}

var benchSink Packet

func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name string
		pkt  []byte
	}{
		{"ipv4-tcp-syn", v4(b, ProtoTCP, nil, ipv4.DontFragment, 0, tcp(40000, 443, TCPSyn, 5, nil))},
		{"ipv4-udp-dns", v4(b, ProtoUDP, nil, 0, 0, udp(53, 40000, make([]byte, 120)))},
		{"ipv6-tcp-syn", v6(ProtoTCP, tcp(40000, 443, TCPSyn, 5, nil))},
		{"ipv6-ext-udp", v6(ProtoHopByHop, cat(ext(ProtoDstOpts, 0), ext(ProtoUDP, 1), udp(1, 53, nil)))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.pkt)))
			var p Packet
			for b.Loop() {
				if err := Decode(c.pkt, &p); err != nil {
					b.Fatal(err)
				}
			}
			benchSink = p
		})
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	pkt := v6(ProtoHopByHop, cat(ext(ProtoTCP, 0), tcp(1, 443, TCPSyn, 0, nil)))
	var p Packet
	if n := testing.AllocsPerRun(100, func() { _ = Decode(pkt, &p) }); n != 0 {
		t.Errorf("Decode allocates %v times per packet, want 0", n)
	}
}
