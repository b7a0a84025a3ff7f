// Command tgprobe is the small network client and echo server that Tollgate's
// end-to-end tests, demo and benchmarks run inside their namespaces. Tests
// copy it to several paths so that executable identity matters.
//
// Exit codes of connect: 0 answered, 3 refused (rejected), 4 timed out
// (dropped), 1 any other error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const (
	exitOK      = 0
	exitError   = 1
	exitRefused = 3
	exitTimeout = 4
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "connect":
		os.Exit(connect(os.Args[2:]))
	case "serve":
		os.Exit(serve(os.Args[2:]))
	case "dns-serve":
		os.Exit(dnsServe(os.Args[2:]))
	case "garbage":
		os.Exit(garbage(os.Args[2:]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tgprobe connect [-timeout D] [-send-only] [-dns ADDR [-repeat N] [-for D]] tcp|udp HOST:PORT\n"+
		"       tgprobe serve [-tcp ADDR] [-udp ADDR]\n"+
		"       tgprobe dns-serve [-addr ADDR] [-ttl S] [-a NAME=IP]... [-cname NAME=TARGET]...\n"+
		"       tgprobe garbage -src4 IP -dst4 IP -src6 IP -dst6 IP [-port P]   (root: malformed packets through raw sockets)")
	os.Exit(2)
}

func connect(args []string) int {
	fs := flag.NewFlagSet("connect", flag.ExitOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	sendOnly := fs.Bool("send-only", false, "udp: send one datagram and exit at once, without waiting for an answer")
	dnsAddr := fs.String("dns", "", "resolve HOST with the DNS server at this UDP address first")
	repeat := fs.Int("repeat", 1, "with -dns: resolve and connect this many times, then print how many worked")
	within := fs.Duration("for", 0, "with -repeat: stop starting new rounds after this long (0: no limit)")
	fs.Parse(args)
	if fs.NArg() != 2 {
		usage()
	}
	network, addr := fs.Arg(0), fs.Arg(1)
	if *dnsAddr != "" && *repeat > 1 {
		return connectRepeat(network, addr, *dnsAddr, *repeat, *within, *timeout, *sendOnly)
	}
	var err error
	if *dnsAddr != "" {
		addr, err = resolveAddr(resolver(*dnsAddr), network, addr, *timeout)
	}
	if err == nil {
		err = dial(network, addr, *timeout, *sendOnly)
	}
	switch {
	case err == nil:
		fmt.Println("ok")
		return exitOK
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EPERM):
		fmt.Println("refused:", err)
		return exitRefused
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		fmt.Println("timeout:", err)
		return exitTimeout
	default:
		fmt.Println("error:", err)
		return exitError
	}
}

// resolveAddr turns HOST:PORT into IP:PORT through r.
func resolveAddr(r *net.Resolver, network, addr string, timeout time.Duration) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ip, err := resolveOne(r, network, host, timeout)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// connectRepeat resolves and connects n times in a row in this one
// process, and prints "rounds R ok K failed F" (exit 0 only when all worked).
func connectRepeat(network, addr, dnsAddr string, n int, within, timeout time.Duration, sendOnly bool) int {
	r := resolver(dnsAddr)
	start := time.Now()
	rounds, ok := 0, 0
	var last error
	for ; rounds < n; rounds++ {
		if within > 0 && time.Since(start) > within {
			break
		}
		a, err := resolveAddr(r, network, addr, timeout)
		if err == nil {
			err = dial(network, a, timeout, sendOnly)
		}
		if err != nil {
			last = err
			continue
		}
		ok++
	}
	fmt.Printf("rounds %d ok %d failed %d in %s\n", rounds, ok, rounds-ok, time.Since(start).Round(time.Millisecond))
	if last != nil {
		fmt.Println("last error:", last)
	}
	if ok != rounds || rounds == 0 {
		return exitError
	}
	return exitOK
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func dial(network, addr string, timeout time.Duration, sendOnly bool) error {
	deadline := time.Now().Add(timeout)
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // no TIME_WAIT pile-up across many runs
	}
	c.SetDeadline(deadline)
	msg := []byte("tollgate-probe\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if sendOnly {
		return nil
	}
	buf := make([]byte, len(msg))
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != string(msg) {
		return fmt.Errorf("unexpected answer %q", buf[:n])
	}
	return nil
}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	tcpAddr := fs.String("tcp", "", "echo TCP on this address")
	udpAddr := fs.String("udp", "", "echo UDP on this address")
	fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *tcpAddr != "" {
		l, err := net.Listen("tcp", *tcpAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			return exitError
		}
		go acceptLoop(l)
	}
	if *udpAddr != "" {
		pc, err := net.ListenPacket("udp", *udpAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			return exitError
		}
		go echoUDP(pc)
	}
	fmt.Println("ready")
	<-ctx.Done()
	return exitOK
}

func acceptLoop(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			c.Write(buf[:n])
			// Wait for the client to close first so TIME_WAIT stays on its side.
			c.Read(buf)
		}()
	}
}

func echoUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}
