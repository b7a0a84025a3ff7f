package attribution

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// diagTable finds sockets with exact sock_diag requests over NETLINK_SOCK_DIAG
// sockets of the calling process's network namespace. It keeps a few netlink
// sockets so concurrent lookups do not wait on each other.
type diagTable struct {
	pool   chan *diagConn
	seq    atomic.Uint32
	mu     sync.Mutex
	closed bool
}

// diagConn is one netlink socket with its buffers.
type diagConn struct {
	fd  int
	req []byte
	buf []byte
}

const diagPoolSize = 4

func newDiagTable() (*diagTable, error) {
	t := &diagTable{pool: make(chan *diagConn, diagPoolSize)}
	// Open one socket now so that a missing sock_diag shows at start.
	c, err := openDiagConn()
	if err != nil {
		return nil, err
	}
	t.pool <- c
	return t, nil
}

func openDiagConn() (*diagConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	// The kernel answers an exact request before sendto returns, so a
	// receive never waits in practice; the timeout bounds a broken kernel.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set sock_diag receive timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind sock_diag netlink socket: %w", err)
	}
	return &diagConn{fd: fd, req: make([]byte, 0, diagRequestMaxSize), buf: make([]byte, 8192)}, nil
}

func (t *diagTable) get() (*diagConn, error) {
	select {
	case c := <-t.pool:
		return c, nil
	default:
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return openDiagConn()
}

func (t *diagTable) put(c *diagConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		unix.Close(c.fd)
		return
	}
	select {
	case t.pool <- c:
	default:
		unix.Close(c.fd)
	}
}

func (t *diagTable) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	for {
		select {
		case c := <-t.pool:
			unix.Close(c.fd)
		default:
			return nil
		}
	}
}

// find asks the kernel for the socket of a flow. For TCP it looks up the
// connection local→remote, or with listen the listener that would take a
// connection to local. For UDP and UDP-Lite it asks which socket a datagram
// from remote to local would be delivered to: the connected socket if one
// exists, otherwise the one bound to the local port (address or wildcard),
// which is the socket that sent local→remote.
func (t *diagTable) find(proto uint8, local, remote netip.AddrPort, ifindex uint32, listen bool) (sockInfo, error) {
	fam := familyOf(local.Addr(), remote.Addr())
	if listen && proto == protoTCP {
		fam = familyOf(local.Addr(), local.Addr())
	}
	if fam == 0 {
		return sockInfo{}, fmt.Errorf("flow %v → %v: %w", local, remote, errBadFlow)
	}
	r := diagRequest{Seq: t.seq.Add(1), Family: fam, Protocol: proto, States: allStates, IfIndex: ifindex}
	switch proto {
	case protoTCP:
		r.Src = local
		if !listen {
			r.Dst = remote
		}
	case protoUDP, protoUDPLite:
		// The kernel's udp_dump_one takes the request's src as the
		// datagram's source ("swapped for historical reasons").
		r.Src, r.Dst = remote, local
	default:
		return sockInfo{}, fmt.Errorf("protocol %d: %w", proto, errBadFlow)
	}
	c, err := t.get()
	if err != nil {
		return sockInfo{}, err
	}
	s, err := c.roundTrip(&r)
	if err != nil && !errors.Is(err, errNoSocket) {
		// The socket may hold half an answer; do not reuse it.
		unix.Close(c.fd)
		return sockInfo{}, fmt.Errorf("sock_diag lookup %d %v→%v: %w", proto, local, remote, err)
	}
	t.put(c)
	if err != nil {
		return sockInfo{}, err
	}
	if !s.matchesFlow(local, remote, listen && proto == protoTCP) {
		return sockInfo{}, errNoSocket
	}
	return s, nil
}

func (c *diagConn) roundTrip(r *diagRequest) (sockInfo, error) {
	c.req = r.encode(c.req[:0])
	if err := unix.Sendto(c.fd, c.req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return sockInfo{}, fmt.Errorf("send request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return sockInfo{}, fmt.Errorf("receive answer: %w", err)
		}
		s, err := decodeDiagReply(c.buf[:n], r.Seq)
		if errors.Is(err, errStaleReply) {
			continue
		}
		return s, err
	}
}

func newSocketTable() (socketTable, error) { return newDiagTable() }
