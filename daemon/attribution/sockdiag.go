package attribution

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Wire format of sock_diag (linux/inet_diag.h, linux/netlink.h). Numbers in
// the netlink header and most inet_diag fields are in host order; ports and
// addresses are in network order.
const (
	sizeofNlMsghdr     = 16
	sizeofNlMsgerr     = 4 + sizeofNlMsghdr
	sizeofInetDiagReq  = 56 // struct inet_diag_req_v2
	sizeofInetDiagMsg  = 72 // struct inet_diag_msg
	msgSockDiagByFam   = 20 // SOCK_DIAG_BY_FAMILY
	msgNlError         = 2  // NLMSG_ERROR
	msgNlDone          = 3  // NLMSG_DONE
	flagNlRequest      = 0x1
	inetDiagNoCookie   = 0xffffffff
	afInet             = 2
	afInet6            = 10
	tcpStateListen     = 10
	tcpStateTimeWait   = 6
	allStates          = 0xffffffff
	errnoENOENT        = 2
	diagRequestMaxSize = sizeofNlMsghdr + sizeofInetDiagReq
)

// native is the host byte order, which netlink headers use.
var native = binary.NativeEndian

// sockInfo is what sock_diag says about one socket.
type sockInfo struct {
	Family uint8
	State  uint8
	Local  netip.AddrPort // unmapped: a v4-mapped address of a dual-stack socket is given as IPv4
	Remote netip.AddrPort
	UID    uint32
	Inode  uint64 // 0 for TIME_WAIT and request sockets, which no process holds
}

// errNoSocket means the kernel has no socket for the asked flow.
var errNoSocket = errors.New("no such socket")

// diagRequest is one exact-match inet_diag request (no NLM_F_DUMP): the
// kernel answers with a hash lookup, whose cost does not depend on how many
// sockets exist.
type diagRequest struct {
	Seq      uint32
	Family   uint8
	Protocol uint8
	States   uint32
	Src, Dst netip.AddrPort // id.idiag_src/sport and id.idiag_dst/dport as the kernel reads them
	IfIndex  uint32
}

// familyOf returns the address family for a flow between a and b (after
// unmapping v4-mapped addresses), or 0 when they disagree or are invalid.
func familyOf(a, b netip.Addr) uint8 {
	a, b = a.Unmap(), b.Unmap()
	switch {
	case a.Is4() && b.Is4():
		return afInet
	case a.Is6() && b.Is6():
		return afInet6
	}
	return 0
}

// encode appends the request, netlink header included, to dst.
func (r *diagRequest) encode(dst []byte) []byte {
	var b [diagRequestMaxSize]byte
	native.PutUint32(b[0:4], diagRequestMaxSize)
	native.PutUint16(b[4:6], msgSockDiagByFam)
	native.PutUint16(b[6:8], flagNlRequest)
	native.PutUint32(b[8:12], r.Seq)
	// b[12:16] port id 0: the kernel fills it.
	q := b[sizeofNlMsghdr:]
	q[0] = r.Family
	q[1] = r.Protocol
	// q[2] ext = 0, q[3] pad
	native.PutUint32(q[4:8], r.States)
	binary.BigEndian.PutUint16(q[8:10], r.Src.Port())
	binary.BigEndian.PutUint16(q[10:12], r.Dst.Port())
	putAddr(q[12:28], r.Src.Addr(), r.Family)
	putAddr(q[28:44], r.Dst.Addr(), r.Family)
	native.PutUint32(q[44:48], r.IfIndex)
	native.PutUint32(q[48:52], inetDiagNoCookie)
	native.PutUint32(q[52:56], inetDiagNoCookie)
	return append(dst, b[:]...)
}

// putAddr writes a into the 16 bytes of an inet_diag address field: IPv4 in
// the first four bytes, IPv6 in all of them. An invalid address is zero.
func putAddr(dst []byte, a netip.Addr, family uint8) {
	if !a.IsValid() {
		return
	}
	if family == afInet {
		v4 := a.Unmap().As4()
		copy(dst, v4[:])
		return
	}
	v6 := a.As16()
	copy(dst, v6[:])
}

// getAddrPort reads an address of the given family and a port from the
// fields of an inet_diag_sockid, unmapping v4-mapped IPv6 addresses.
func getAddrPort(field []byte, port []byte, family uint8) netip.AddrPort {
	p := binary.BigEndian.Uint16(port)
	if family == afInet {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(field[:4])), p)
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(field[:16])).Unmap(), p)
}

// decodeDiagReply reads the kernel's answer to one exact request with
// sequence number seq. It returns errNoSocket when the kernel has none,
// errStaleReply for a message that answers another request (skip it and
// read again), and an error for anything malformed.
func decodeDiagReply(b []byte, seq uint32) (sockInfo, error) {
	for len(b) >= sizeofNlMsghdr {
		l := native.Uint32(b[0:4])
		typ := native.Uint16(b[4:6])
		mseq := native.Uint32(b[8:12])
		if l < sizeofNlMsghdr || uint64(l) > uint64(len(b)) {
			return sockInfo{}, fmt.Errorf("netlink message length %d of %d bytes", l, len(b))
		}
		body := b[sizeofNlMsghdr:l]
		next := nlAlign(l)
		if next > uint32(len(b)) {
			next = uint32(len(b))
		}
		b = b[next:]
		if mseq != seq {
			continue
		}
		switch typ {
		case msgNlError:
			if len(body) < 4 {
				return sockInfo{}, fmt.Errorf("short netlink error message: %d bytes", len(body))
			}
			errno := -int32(native.Uint32(body[0:4]))
			switch errno {
			case 0:
				continue // an ack; the answer, if any, came before it
			case errnoENOENT:
				return sockInfo{}, errNoSocket
			}
			return sockInfo{}, fmt.Errorf("sock_diag: errno %d", errno)
		case msgNlDone:
			return sockInfo{}, errNoSocket
		case msgSockDiagByFam:
			return decodeDiagMsg(body)
		default:
			return sockInfo{}, fmt.Errorf("unexpected netlink message type %d", typ)
		}
	}
	return sockInfo{}, errStaleReply
}

// errStaleReply means a read held no answer to the current request.
var errStaleReply = errors.New("no answer to this request in the message")

// decodeDiagMsg reads one struct inet_diag_msg.
func decodeDiagMsg(b []byte) (sockInfo, error) {
	if len(b) < sizeofInetDiagMsg {
		return sockInfo{}, fmt.Errorf("inet_diag_msg of %d bytes, want %d", len(b), sizeofInetDiagMsg)
	}
	s := sockInfo{Family: b[0], State: b[1]}
	if s.Family != afInet && s.Family != afInet6 {
		return sockInfo{}, fmt.Errorf("inet_diag_msg of family %d", s.Family)
	}
	s.Local = getAddrPort(b[8:24], b[4:6], s.Family)
	s.Remote = getAddrPort(b[24:40], b[6:8], s.Family)
	s.UID = native.Uint32(b[64:68])
	s.Inode = uint64(native.Uint32(b[68:72]))
	return s, nil
}

func nlAlign(n uint32) uint32 { return (n + 3) &^ 3 }

// matchesFlow says whether a socket the kernel returned really is the one a
// flow from local to remote belongs to: its local port is the flow's, and
// its addresses are the flow's or wildcards. With listen it must be a TCP
// listener; without, it must not be one. It guards against a lookup that
// fell through to an unrelated socket.
func (s sockInfo) matchesFlow(local, remote netip.AddrPort, listen bool) bool {
	if s.Local.Port() != local.Port() {
		return false
	}
	if la := s.Local.Addr(); !la.IsUnspecified() && la != local.Addr().Unmap() {
		return false
	}
	if listen {
		return s.State == tcpStateListen
	}
	if s.State == tcpStateListen {
		return false
	}
	if s.Remote.Addr().IsUnspecified() {
		return s.Remote.Port() == 0
	}
	return s.Remote.Addr() == remote.Addr().Unmap() && s.Remote.Port() == remote.Port()
}
