// Command tgload is the load client and server of Tollgate's benchmarks
// (internal/bench). It runs inside the benchmark's network namespaces and
// prints its measurements as one JSON object on stdout.
//
//	tgload serve -addr :7000[,:7001]          echo server; closes after the client
//	tgload run -addr H:P -n N -workers W [-idle K]  N connections, W at a time: rate, connect latency
//	tgload hold -addr H:P -n N                 open N idle connections and keep them until SIGTERM
//	tgload churn -addr H:P -n N -parallel P EXE...  N processes (copies of tgprobe), each connecting once
//	tgload first -addr H:P                     connect until one is refused; print when
//
// Every client socket closes with linger 0 (a reset), so no TIME_WAIT piles
// up between runs. tgload never touches netfilter.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tollgate-fw/tollgate/internal/echo"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	raiseFileLimit()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	case "hold":
		err = hold(os.Args[2:])
	case "churn":
		err = churn(os.Args[2:])
	case "first":
		err = first(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tgload:", err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the open-file limit as far as allowed: the server
// and hold keep one descriptor per connection, tens of thousands of them.
func raiseFileLimit() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return
	}
	want := rl
	want.Max = max(rl.Max, 1<<20)
	want.Cur = want.Max
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tgload serve|run|hold|churn|first [flags] (see the package doc)")
	os.Exit(2)
}

func emit(v any) error { return json.NewEncoder(os.Stdout).Encode(v) }

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addrs := fs.String("addr", ":7000", "comma-separated TCP addresses to listen on")
	fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	for _, a := range strings.Split(*addrs, ",") {
		lc := net.ListenConfig{KeepAlive: -1} // idle connections stay silent
		l, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", a, err)
		}
		go func() { <-ctx.Done(); l.Close() }()
		go acceptLoop(l)
	}
	fmt.Println("ready")
	<-ctx.Done()
	return nil
}

// acceptLoop echoes what each connection sends until the client closes it:
// the server never closes first.
func acceptLoop(l net.Listener) {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors or memory: say so and keep serving.
			fmt.Fprintln(os.Stderr, "tgload serve: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go echoBack(c)
	}
}

// echoBack writes back what c sends until the client closes it. A plain loop:
// io.Copy would splice through a pipe, three descriptors per connection.
func echoBack(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Result is what `tgload run` prints.
type Result struct {
	Connections int    `json:"connections"` // completed (connect, echo, close)
	Errors      int    `json:"errors"`
	FirstError  string `json:"first_error,omitempty"`
	// Resets are connections reset after the handshake (counted apart
	// from Errors): the firewall let their SYN through; whether the reset
	// was its doing is for the caller to check in its log.
	Resets     int     `json:"resets"`
	FirstReset string  `json:"first_reset,omitempty"`
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"per_sec"`
	P50us      float64 `json:"p50_us"` // connect() latency
	P99us      float64 `json:"p99_us"`
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	addr := fs.String("addr", "", "server HOST:PORT")
	n := fs.Int("n", 20000, "connections in total")
	workers := fs.Int("workers", 8, "connections in flight at once")
	timeout := fs.Duration("timeout", 3*time.Second, "per-connection timeout")
	idle := fs.Int("idle", 0, "first open this many idle connections and hold them (in this process) until done")
	fs.Parse(args)
	if *addr == "" || *n <= 0 || *workers <= 0 {
		return errors.New("run: need -addr, -n > 0, -workers > 0")
	}
	held := make([]net.Conn, 0, *idle)
	defer func() {
		for _, c := range held {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	for len(held) < *idle {
		c, err := idleDialer.Dial("tcp", *addr)
		if err != nil {
			return fmt.Errorf("idle connection %d: %w", len(held)+1, err)
		}
		held = append(held, c)
	}
	var next atomic.Int64
	var errCount, resetCount atomic.Int64
	var firstErr, firstReset atomic.Value
	lat := make([][]time.Duration, *workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			mine := make([]time.Duration, 0, *n / *workers + 1)
			buf := make([]byte, 1)
			for next.Add(1) <= int64(*n) {
				d, err := echo.Once(*addr, *timeout, buf)
				switch {
				case echo.IsReset(err):
					resetCount.Add(1)
					firstReset.CompareAndSwap(nil, err.Error())
					continue
				case err != nil:
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, d)
			}
			lat[w] = mine
		}(w)
	}
	wg.Wait()
	took := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := Result{Connections: len(all), Errors: int(errCount.Load()), Resets: int(resetCount.Load()), Seconds: took.Seconds()}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	if s, ok := firstReset.Load().(string); ok {
		r.FirstReset = s
	}
	if took > 0 {
		r.PerSec = float64(len(all)) / took.Seconds()
	}
	r.P50us = micros(percentile(all, 0.50))
	r.P99us = micros(percentile(all, 0.99))
	return emit(r)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// hold opens n connections, prints {"held": n} and keeps them idle until
// SIGTERM or SIGINT.
func hold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	addr := fs.String("addr", "", "server HOST:PORT")
	n := fs.Int("n", 10000, "connections to hold")
	fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	conns := make([]net.Conn, 0, *n)
	defer func() {
		for _, c := range conns {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	for len(conns) < *n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c, err := idleDialer.Dial("tcp", *addr)
		if err != nil {
			return fmt.Errorf("hold connection %d: %w", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	if err := emit(map[string]int{"held": len(conns)}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// idleDialer makes connections that stay silent while idle: no keepalive
// probes (Go sends them by default every 15 s).
var idleDialer = net.Dialer{Timeout: 3 * time.Second, KeepAlive: -1}

// ChurnResult is what `tgload churn` prints: which executable each process
// id ran, so a connection log can be checked against it.
type ChurnResult struct {
	Started  int            `json:"started"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	FirstErr string         `json:"first_error,omitempty"`
	Exe      map[int]string `json:"exe"` // pid -> executable path
	Seconds  float64        `json:"seconds"`
}

func churn(args []string) error {
	fs := flag.NewFlagSet("churn", flag.ExitOnError)
	addr := fs.String("addr", "", "server HOST:PORT")
	n := fs.Int("n", 1000, "processes in total")
	parallel := fs.Int("parallel", 32, "processes running at once")
	fs.Parse(args)
	exes := fs.Args()
	if *addr == "" || len(exes) == 0 || *n <= 0 || *parallel <= 0 {
		return errors.New("churn: need -addr, -n, -parallel and at least one executable")
	}
	res := ChurnResult{Exe: make(map[int]string, *n)}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				exe := exes[int(i)%len(exes)]
				cmd := exec.Command(exe, "connect", "-timeout", "3s", "tcp", *addr)
				out := &strings.Builder{}
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					mu.Lock()
					res.Failed++
					if res.FirstErr == "" {
						res.FirstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				pid := cmd.Process.Pid
				err := cmd.Wait()
				mu.Lock()
				res.Started++
				res.Exe[pid] = exe
				if err != nil {
					res.Failed++
					if res.FirstErr == "" {
						res.FirstErr = fmt.Sprintf("%s: %v: %s", exe, err, strings.TrimSpace(out.String()))
					}
				} else {
					res.OK++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	return emit(res)
}

// first connects in a loop (each attempt closed with a reset) until one is
// refused, and prints when: with a daemon starting whose default is reject,
// that is the first queued packet it decided.
func first(args []string) error {
	fs := flag.NewFlagSet("first", flag.ExitOnError)
	addr := fs.String("addr", "", "server HOST:PORT")
	limit := fs.Duration("limit", 30*time.Second, "give up after this long")
	fs.Parse(args)
	end := time.Now().Add(*limit)
	attempts := 0
	for time.Now().Before(end) {
		attempts++
		c, err := net.DialTimeout("tcp", *addr, 500*time.Millisecond)
		if err == nil {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return emit(map[string]int64{"refused_unix_ns": time.Now().UnixNano(), "attempts": int64(attempts)})
		}
	}
	return fmt.Errorf("first: no connection refused within %s (%d attempts)", *limit, attempts)
}
