package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"syscall"
)

// garbagePacket is one malformed or odd packet, built whole (IP header
// included) and sent through a raw socket, so it meets the OUTPUT hook and,
// when conntrack calls it NEW, the daemon's queue.
type garbagePacket struct {
	name string
	v6   bool
	data []byte
}

// garbage sends every garbage packet from src to dst through raw sockets
// (IPv4: IPPROTO_RAW, header included; IPv6 the same) and prints one line a
// packet: "sent NAME LEN", "kernel-refused NAME: ERR" (the kernel would not
// send it: EINVAL) or "error NAME: ERR". It needs root (CAP_NET_RAW).
// Exit 0 when no send failed otherwise, 1 when one did.
func garbage(args []string) int {
	fs := flag.NewFlagSet("garbage", flag.ExitOnError)
	src4 := fs.String("src4", "", "IPv4 source address")
	dst4 := fs.String("dst4", "", "IPv4 destination address")
	src6 := fs.String("src6", "", "IPv6 source address")
	dst6 := fs.String("dst6", "", "IPv6 destination address")
	port := fs.Int("port", 7000, "destination port where a packet has one")
	fs.Parse(args)
	var s4, d4, s6, d6 netip.Addr
	var err error
	for _, a := range []struct {
		in  string
		out *netip.Addr
		v6  bool
	}{{*src4, &s4, false}, {*dst4, &d4, false}, {*src6, &s6, true}, {*dst6, &d6, true}} {
		if *a.out, err = netip.ParseAddr(a.in); err != nil || a.out.Is6() != a.v6 {
			fmt.Fprintf(os.Stderr, "garbage: need -src4 -dst4 (IPv4) and -src6 -dst6 (IPv6), got %q\n", a.in)
			return exitError
		}
	}
	fd4, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		fmt.Fprintln(os.Stderr, "garbage: open IPv4 raw socket:", err)
		return exitError
	}
	defer syscall.Close(fd4)
	fd6, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		fmt.Fprintln(os.Stderr, "garbage: open IPv6 raw socket:", err)
		return exitError
	}
	defer syscall.Close(fd6)
	code := exitOK
	for _, p := range garbagePackets(s4, d4, s6, d6, uint16(*port)) {
		var err error
		if p.v6 {
			err = syscall.Sendto(fd6, p.data, 0, &syscall.SockaddrInet6{Addr: d6.As16()})
		} else {
			err = syscall.Sendto(fd4, p.data, 0, &syscall.SockaddrInet4{Addr: d4.As4()})
		}
		if errors.Is(err, syscall.EINVAL) {
			// The kernel itself refuses some headers (an IHL below 5).
			fmt.Printf("kernel-refused %s: %v\n", p.name, err)
			continue
		}
		if err != nil {
			fmt.Printf("error %s: %v\n", p.name, err)
			code = exitError
			continue
		}
		fmt.Printf("sent %s %d\n", p.name, len(p.data))
	}
	return code
}

// IP protocol numbers used below.
const (
	gHopByHop = 0
	gICMP     = 1
	gTCP      = 6
	gUDP      = 17
	gRouting  = 43
	gFragment = 44
	gNoNext   = 59
	gDstOpts  = 60
	gUnknown  = 253 // reserved for experiments: no tracker, no decoder knows it
)

// garbagePackets builds the list. Checksums of transport headers are left
// zero: conntrack does not check them on the output path, and the daemon
// must not care.
func garbagePackets(s4, d4, s6, d6 netip.Addr, port uint16) []garbagePacket {
	var ps []garbagePacket
	add4 := func(name string, ihl int, proto uint8, fragField uint16, payload []byte) {
		ps = append(ps, garbagePacket{name: name, data: ipv4(s4, d4, ihl, proto, fragField, payload)})
	}
	add6 := func(name string, next uint8, payload []byte) {
		ps = append(ps, garbagePacket{name: name, v6: true, data: ipv6(s6, d6, next, payload)})
	}
	syn := tcpSyn(40001, port, 5)

	// IPv4.
	add4("tcp4-truncated-header", 5, gTCP, 0, syn[:8])
	add4("tcp4-data-offset-too-small", 5, gTCP, 0, withByte(syn, 12, 2<<4))
	add4("tcp4-data-offset-past-end", 5, gTCP, 0, withByte(syn, 12, 15<<4))
	badOpts := append(tcpSyn(40002, port, 6), 2, 0, 1, 1) // MSS option of length 0
	add4("tcp4-syn-malformed-options", 5, gTCP, 0, badOpts)
	add4("tcp4-syn-flags-all", 5, gTCP, 0, withByte(tcpSyn(40003, port, 5), 13, 0xff))
	add4("ipv4-ihl-4", 4, gTCP, 0, tcpSyn(40004, port, 5))
	add4("ipv4-ihl-15-options", 15, gTCP, 0, tcpSyn(40005, port, 5))
	add4("ipv4-ihl-15-bad-options", 15, gTCP, 0x0, tcpSyn(40006, port, 5)) // options below set to garbage
	ps[len(ps)-1].data = fillOptions(ps[len(ps)-1].data, 0x44)
	add4("udp4-length-too-small", 5, gUDP, 0, udp(40007, port, 4, nil))
	add4("udp4-length-too-big", 5, gUDP, 0, udp(40008, port, 900, []byte("x")))
	add4("udp4-empty", 5, gUDP, 0, udp(40009, port, 8, nil))
	add4("udp4-port-zero", 5, gUDP, 0, udp(0, 0, 12, []byte("zero")))
	add4("icmp4-echo-short", 5, gICMP, 0, []byte{8, 0, 0, 0})
	add4("icmp4-unknown-type", 5, gICMP, 0, []byte{77, 3, 0, 0, 1, 2, 3, 4})
	add4("icmp4-echo-odd", 5, gICMP, 0, []byte{8, 99, 0, 0, 0xbe, 0xef, 0, 1, 0xff})
	add4("proto4-unknown-253", 5, gUnknown, 0, []byte("not a known protocol"))
	add4("proto4-unknown-253-empty", 5, gUnknown, 0, nil)
	// Fragments: a lone first fragment, a lone later one, overlapping ones,
	// and a TCP SYN split inside its header (the tiny-fragment attack).
	add4("frag4-first-only", 5, gUDP, 0x2000|0, udp(40010, port, 16, []byte("first")))
	add4("frag4-later-only", 5, gUDP, 3, []byte("a later fragment"))
	add4("frag4-overlap-a", 5, gUDP, 0x2000, udp(40011, port, 24, []byte("overlap1")))
	add4("frag4-overlap-b", 5, gUDP, 1, []byte("overlapping-data"))
	tiny := tcpSyn(40012, port, 5)
	add4("frag4-tcp-tiny-a", 5, gTCP, 0x2000, tiny[:8])
	add4("frag4-tcp-tiny-b", 5, gTCP, 1, tiny[8:])
	ps[len(ps)-2].data[5], ps[len(ps)-1].data[5] = 0x77, 0x77 // one IP id for both
	ps[len(ps)-4].data[5], ps[len(ps)-3].data[5] = 0x66, 0x66

	// IPv6.
	syn6 := tcpSyn(40020, port, 5)
	add6("tcp6-truncated-header", gTCP, syn6[:10])
	add6("tcp6-ext-chain-10-dstopts", gDstOpts, extChain(10, gDstOpts, gTCP, syn6))
	add6("tcp6-ext-chain-30-dstopts", gDstOpts, extChain(30, gDstOpts, gTCP, tcpSyn(40021, port, 5)))
	add6("tcp6-ext-chain-hbh-routing-dstopts", gHopByHop,
		ext(gRouting, ext(gDstOpts, ext(gTCP, tcpSyn(40022, port, 5)))))
	add6("ipv6-ext-truncated", gHopByHop, []byte{gTCP, 40, 0, 0, 0, 0, 0, 0})
	add6("ipv6-no-next-header", gDstOpts, ext(gNoNext, nil))
	add6("proto6-unknown-253", gDstOpts, ext(gUnknown, []byte("unknown after options")))
	add6("frag6-atomic-udp", gFragment, frag6(gUDP, 0, false, 0x1234, udp(40023, port, 13, []byte("atomi"))))
	add6("frag6-first-only", gFragment, frag6(gUDP, 0, true, 0x1235, udp(40024, port, 24, []byte("first..."))))
	add6("frag6-ext-after-fragment", gFragment, frag6(gDstOpts, 0, false, 0x1236,
		extChain(9, gDstOpts, gTCP, tcpSyn(40025, port, 5))))
	add6("udp6-length-zero", gUDP, udp(40026, port, 0, []byte("jumbo?")))
	return ps
}

func withByte(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}

// ipv4 builds an IPv4 packet. ihl is in 32-bit words; options (ihl > 5)
// are NOPs. fragField is the flags and fragment offset field.
func ipv4(src, dst netip.Addr, ihl int, proto uint8, fragField uint16, payload []byte) []byte {
	hl := max(ihl, 5) * 4
	b := make([]byte, hl+len(payload))
	b[0] = 4<<4 | byte(ihl&0xf)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:], fragField)
	b[8] = 64
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 20; i < hl; i++ {
		b[i] = 1 // NOP
	}
	copy(b[hl:], payload)
	return b
}

// fillOptions overwrites an IPv4 packet's options with v.
func fillOptions(b []byte, v byte) []byte {
	hl := int(b[0]&0xf) * 4
	for i := 20; i < hl && i < len(b); i++ {
		b[i] = v
	}
	return b
}

func ipv6(src, dst netip.Addr, next uint8, payload []byte) []byte {
	b := make([]byte, 40+len(payload))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = next
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], payload)
	return b
}

// ext is an 8-byte IPv6 options header (PadN) followed by rest.
func ext(next uint8, rest []byte) []byte {
	return append([]byte{next, 0, 1, 4, 0, 0, 0, 0}, rest...)
}

// extChain is n options headers of type kind, the last pointing at last.
func extChain(n int, kind, last uint8, rest []byte) []byte {
	b := rest
	for i := range n {
		next := kind
		if i == 0 {
			next = last
		}
		b = ext(next, b)
	}
	return b
}

func frag6(next uint8, offset uint16, more bool, id uint32, rest []byte) []byte {
	h := make([]byte, 8)
	h[0] = next
	f := offset << 3
	if more {
		f |= 1
	}
	binary.BigEndian.PutUint16(h[2:], f)
	binary.BigEndian.PutUint32(h[4:], id)
	return append(h, rest...)
}

// tcpSyn is a TCP SYN header of doff words (options, if any, appended by
// the caller).
func tcpSyn(sport, dport uint16, doff int) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	b[12] = byte(doff << 4)
	b[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(b[14:], 65535)
	return b
}

// udp is a UDP header whose length field says length, then payload.
func udp(sport, dport uint16, length int, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(length))
	return append(b, payload...)
}
