// Command tgsoak is the load client of Tollgate's soak test
// (daemon/e2e TestIntegrationSoak, `make soak`). It runs inside the test's
// client namespace and, for a fixed time, keeps several workers making new
// TCP connections one after another (connect, a one-byte echo, close with
// linger 0 so no TIME_WAIT piles up), round-robin over the given addresses.
// It counts how each attempt ended and prints the counts as one JSON object
// on stdout. tgsoak never touches netfilter and asserts nothing: the test
// decides what the counts must be.
//
//	tgsoak -addr H:P[,H:P...] -workers W -duration D -timeout T
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate-fw/tollgate/internal/echo"
)

// Result is what tgsoak prints.
type Result struct {
	Attempts   int    `json:"attempts"`
	OK         int    `json:"ok"`      // connected and echoed
	Refused    int    `json:"refused"` // reset or unreachable: a reject verdict
	Timeout    int    `json:"timeout"` // no answer within -timeout: no verdict, or a drop
	Other      int    `json:"other"`   // any other error
	FirstOther string `json:"first_other,omitempty"`
	// Reset: reset after the handshake (a verdict refuses the SYN, so a
	// reset then is another's doing; the caller checks the daemon's log).
	Reset      int     `json:"reset"`
	FirstReset string  `json:"first_reset,omitempty"`
	Seconds    float64 `json:"seconds"`
}

func main() {
	addrs := flag.String("addr", "", "comma-separated TCP addresses to connect to, round-robin")
	workers := flag.Int("workers", 4, "connections in flight at once")
	duration := flag.Duration("duration", 10*time.Second, "start no new connection after this long")
	timeout := flag.Duration("timeout", 15*time.Second, "give one connection this long (connect and echo)")
	flag.Parse()
	if *addrs == "" || *workers < 1 || *duration <= 0 || *timeout <= 0 {
		fmt.Fprintln(os.Stderr, "usage: tgsoak -addr H:P[,H:P...] [-workers W] [-duration D] [-timeout T]")
		os.Exit(2)
	}
	res := soak(strings.Split(*addrs, ","), *workers, *duration, *timeout)
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "tgsoak: print result:", err)
		os.Exit(1)
	}
}

func soak(addrs []string, workers int, duration, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	start := time.Now()
	results := make([]Result, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			var buf [1]byte
			for i := w; ctx.Err() == nil; i++ {
				r.Attempts++
				_, err := echo.Once(addrs[i%len(addrs)], timeout, buf[:])
				switch {
				case err == nil:
					r.OK++
				case echo.IsReset(err):
					r.Reset++
					if r.FirstReset == "" {
						r.FirstReset = err.Error()
					}
				case errors.Is(err, syscall.ECONNREFUSED),
					errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EPERM):
					r.Refused++
				case isTimeout(err):
					r.Timeout++
				default:
					r.Other++
					if r.FirstOther == "" {
						r.FirstOther = err.Error()
					}
				}
			}
		}()
	}
	wg.Wait()
	var total Result
	for _, r := range results {
		total.Attempts += r.Attempts
		total.OK += r.OK
		total.Refused += r.Refused
		total.Timeout += r.Timeout
		total.Other += r.Other
		if total.FirstOther == "" {
			total.FirstOther = r.FirstOther
		}
		total.Reset += r.Reset
		if total.FirstReset == "" {
			total.FirstReset = r.FirstReset
		}
	}
	total.Seconds = time.Since(start).Seconds()
	return total
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
