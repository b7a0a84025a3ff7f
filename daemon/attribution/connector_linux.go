package attribution

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// procConnector is a NETLINK_CONNECTOR socket subscribed to process events.
// The kernel only offers it in the initial network namespace (and to
// listeners in the initial user and pid namespaces).
type procConnector struct {
	fd   int
	wake int // eventfd that ends wait at close
	buf  []byte

	mu     sync.Mutex // held by drain and close
	closed bool
}

// errNoConnector means the proc connector cannot be used here.
var errNoConnector = errors.New("proc connector unavailable")

// connectorAckTimeout bounds how long openProcConnector waits for the
// kernel to confirm the subscription. The kernel confirms at once when it
// accepts; it stays silent when it ignores the request (a listener in
// another user or pid namespace).
const connectorAckTimeout = time.Second

// openProcConnector opens and subscribes a proc connector socket. With
// netnsPath it opens the socket inside that network namespace (for example
// /proc/1/ns/net when the daemon runs in another one): process events do
// not depend on the network namespace, only the socket's creation does.
func openProcConnector(netnsPath string) (*procConnector, error) {
	fd, err := connectorSocket(netnsPath)
	if err != nil {
		return nil, err
	}
	c := &procConnector{fd: fd, wake: -1, buf: make([]byte, 64<<10)}
	if err := c.subscribe(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("proc connector: create eventfd: %w", err)
	}
	return c, nil
}

func connectorSocket(netnsPath string) (int, error) {
	if netnsPath == "" {
		return newConnectorSocket()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	// A fresh goroutine on a locked thread enters the namespace; if it
	// cannot return to its own, the goroutine exits still locked and the
	// runtime discards the thread.
	go func() {
		runtime.LockOSThread()
		fd, err := inNetns(netnsPath, newConnectorSocket)
		if err == nil || !errors.Is(err, errNetnsStuck) {
			runtime.UnlockOSThread()
		}
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

var errNetnsStuck = errors.New("cannot return to own network namespace")

// inNetns runs fn with the calling (locked) thread in the network
// namespace at path.
func inNetns(path string, fn func() (int, error)) (int, error) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return -1, fmt.Errorf("open own network namespace: %w", err)
	}
	defer self.Close()
	target, err := os.Open(path)
	if err != nil {
		return -1, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	fd, ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		if ferr == nil {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("%w: %v", errNetnsStuck, err)
	}
	return fd, ferr
}

func newConnectorSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		// EPROTONOSUPPORT outside the initial network namespace.
		return -1, fmt.Errorf("%w: open netlink connector socket: %v", errNoConnector, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: join proc connector group: %v", errNoConnector, err)
	}
	// Bursts of fork/exec (builds) must not overflow the queue; when they
	// do, drain reports the loss and caches are distrusted.
	const rcvbuf = 8 << 20
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	return fd, nil
}

// subscribe sends PROC_CN_MCAST_LISTEN and waits for the kernel's ack.
func (c *procConnector) subscribe() error {
	const seq = 1 // the kernel's ack says ack = 1, our ack (0) + 1
	if err := unix.Sendto(c.fd, encodeListen(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("%w: subscribe: %v", errNoConnector, err)
	}
	deadline := time.Now().Add(connectorAckTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w: the kernel did not confirm the subscription (another user or pid namespace?)", errNoConnector)
		}
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("proc connector: wait for ack: %w", err)
		}
		acked := false
		var perr error
		for {
			n, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				break
			}
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			if err != nil {
				return fmt.Errorf("proc connector: read ack: %w", err)
			}
			// The ack carries ack = 1 (our ack + 1); the kernel rewrites its
			// seq. Any event proves the subscription works.
			perr = parseConnectorMessages(c.buf[:n], func(ev procEvent) {
				if ev.What == procEventNone && ev.Ack == 1 && ev.Err != 0 {
					perr = fmt.Errorf("%w: subscription refused: errno %d", errNoConnector, ev.Err)
				}
				acked = true
			})
			if perr != nil {
				return perr
			}
		}
		if acked {
			return nil
		}
	}
}

// drain reads every queued event without blocking and calls fn for each.
// lost reports that the kernel dropped events (receive queue overrun).
func (c *procConnector) drain(fn func(procEvent)) (lost bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, ErrClosed
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return lost, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			lost = true
			continue
		case err != nil:
			return lost, fmt.Errorf("read proc connector: %w", err)
		}
		if err := parseConnectorMessages(c.buf[:n], fn); err != nil {
			// A datagram we cannot read may have held an exec or exit.
			lost = true
		}
	}
}

// wait blocks until events are queued or close is called.
func (c *procConnector) wait() error {
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.wake), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for proc events: %w", err)
		}
		if fds[1].Revents != 0 {
			return ErrClosed
		}
		// POLLIN, or POLLERR after an overrun: drain reads either.
		return nil
	}
}

// interrupt makes a pending or future wait return ErrClosed.
func (c *procConnector) interrupt() {
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(c.wake, one[:])
}

// close releases the socket. The caller must have stopped calling wait
// (interrupt, then join the waiting goroutine).
func (c *procConnector) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	err := unix.Close(c.fd)
	unix.Close(c.wake)
	return err
}

func newEventSource(netnsPath string) (eventSource, error) { return openProcConnector(netnsPath) }
