// Command tgbench runs Tollgate's benchmarks (package internal/bench) in
// namespaces it creates and removes, prints the table and writes the
// figures as JSON. Flags and wiring only. Needs root: sudo make bench.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tollgate-fw/tollgate/internal/bench"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding tollgated, tgload, tgbare and tgprobe")
	out := flag.String("out", "bench/results.json", "write the figures here as JSON; empty: don't")
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "a fast smoke run (figures too small to quote); also BENCH_QUICK=1")
	conns := flag.Int("conns", 0, "connections per case and round (0: 20000, quick 1500)")
	rounds := flag.Int("rounds", 0, "rounds (0: 3, quick 1)")
	workers := flag.Int("workers", 0, "load client connections in flight (0: 8, quick 4)")
	profile := flag.String("profile", "", "write a CPU profile of tollgated for every daemon case into this directory")
	only := flag.String("only", "", "run only these parts, comma-separated: case ids (1,2,3,4,5,6,3l,3i,3p), memory, churn; empty: all")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tgbench: needs root to create network namespaces (sudo make bench)")
		os.Exit(1)
	}
	o := bench.Full()
	if *quick {
		o = bench.Quick()
	}
	if *conns > 0 {
		o.Conns = *conns
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	if *workers > 0 {
		o.Workers = *workers
	}
	o.Bin, o.Progress, o.ProfileDir = *bin, os.Stderr, *profile
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "tgbench:", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tgbench:", err)
		stop()
		os.Exit(1)
	}
	res.WriteTable(os.Stdout)
	if *out != "" {
		data, err := json.MarshalIndent(res, "", "  ")
		if err == nil {
			os.MkdirAll(filepath.Dir(*out), 0o755)
			err = os.WriteFile(*out, append(data, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "tgbench: write results:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "tgbench: figures written to %s\n", *out)
	}
}
