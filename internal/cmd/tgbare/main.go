// Command tgbare is the floor any NFQUEUE firewall pays, for Tollgate's
// benchmarks: it installs the same chains as tollgated (package netfilter,
// the daemon's default marks) and answers every queued packet with the same
// allow verdict tollgated gives (NF_REPEAT with the accept mark), deciding
// nothing. It is meant to run inside a benchmark's network namespace only,
// and removes its chains on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/tollgate-fw/tollgate/daemon/netfilter"
	"github.com/tollgate-fw/tollgate/daemon/queue"
)

func main() {
	num := flag.Uint("queue", 7467, "NFQUEUE number")
	acceptMark := flag.Uint("accept-mark", 0x200000, "mark bit set on allowed outbound packets (NF_REPEAT), as tollgated does; 0: plain NF_ACCEPT")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(uint16(*num), uint32(*acceptMark), log); err != nil {
		fmt.Fprintln(os.Stderr, "tgbare:", err)
		os.Exit(1)
	}
}

func run(num uint16, acceptMark uint32, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var q *queue.Queue
	var seen, failed atomic.Uint64
	q, err := queue.Open(ctx, queue.Config{Num: num, Logger: log}, func(p queue.Packet) {
		seen.Add(1)
		v := queue.Verdict{Kind: queue.Accept}
		if acceptMark != 0 {
			v = queue.Verdict{Kind: queue.Repeat, Mark: p.Mark | acceptMark, SetMark: true}
		}
		if err := q.Verdict(p.ID, v); err != nil {
			failed.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer q.Close()
	nf, err := netfilter.New(netfilter.Options{QueueNum: num, AcceptMarkOut: acceptMark}, log)
	if err != nil {
		return fmt.Errorf("netfilter: %w", err)
	}
	defer nf.Remove()
	if err := nf.Install(); err != nil {
		return fmt.Errorf("install chains: %w", err)
	}
	fmt.Println("ready")
	<-ctx.Done()
	if err := nf.Remove(); err != nil {
		return fmt.Errorf("remove chains: %w", err)
	}
	fmt.Printf("stopped: %d packets accepted, %d verdict errors\n", seen.Load(), failed.Load())
	return nil
}
