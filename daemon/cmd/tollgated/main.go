// Command tollgated is Tollgate's privileged daemon: it decides every new
// connection on the machine by per-application rules. Flags and wiring only;
// the work is in daemon/service.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/tollgate-fw/tollgate/daemon/config"
	"github.com/tollgate-fw/tollgate/daemon/service"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	cfgPath := flag.String("config", "", "configuration file (TOML) over the embedded defaults; empty: /etc/tollgate/config.toml if it exists")
	check := flag.Bool("check-config", false, "validate the configuration and the rules directory, then exit")
	printDefaults := flag.Bool("print-default-config", false, "print the embedded default configuration and exit")
	importRules := flag.String("import-rules", "", "store the rules of this TOML file as forever system rules in the database (daemon stopped), then exit")
	showVersion := flag.Bool("version", false, "print the version and exit")
	cpuProfile := flag.String("cpuprofile", "", "debug: write a CPU profile of the run to this file (pprof format)")
	memProfile := flag.String("memprofile", "", "debug: write a heap profile to this file when the daemon stops (pprof format)")
	flag.Parse()

	switch {
	case *showVersion:
		fmt.Println("tollgated", version)
		return
	case *printDefaults:
		os.Stdout.Write(config.DefaultTOML())
		return
	}
	path := *cfgPath
	if path == "" {
		if _, err := os.Stat(service.DefaultConfigPath); err == nil {
			path = service.DefaultConfigPath
		}
	}
	cfg, err := config.Load(path)
	if err != nil {
		fail(err)
	}
	level, _ := config.ParseLogLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	switch {
	case *check:
		if err := service.CheckConfig(cfg, os.Stdout); err != nil {
			fail(err)
		}
		return
	case *importRules != "":
		n, err := service.ImportRules(cfg, log, *importRules)
		if err != nil {
			fail(err)
		}
		fmt.Printf("imported %s into %s: %d rule(s) added or changed\n", *importRules, cfg.Database, n)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	log.Info("tollgated starting", "version", version, "config", path)
	stopProfiles := startProfiles(*cpuProfile, *memProfile, log)
	err = service.Run(ctx, service.Options{Config: cfg, Log: log, Reload: reload, Version: version})
	stopProfiles()
	if err != nil {
		fail(err)
	}
}

// startProfiles starts the debug profiles asked for; the returned function
// ends them. A profile that cannot be written is logged, never fatal.
func startProfiles(cpuPath, memPath string, log *slog.Logger) func() {
	var cpu *os.File
	if cpuPath != "" {
		f, err := os.Create(cpuPath)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			log.Error("start cpu profile", "file", cpuPath, "err", err)
		} else {
			cpu = f
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if memPath != "" {
			f, err := os.Create(memPath)
			if err == nil {
				err = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				log.Error("write heap profile", "file", memPath, "err", err)
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tollgated:", err)
	os.Exit(1)
}
