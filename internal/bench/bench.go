// Package bench measures what Tollgate costs a new connection: it builds a
// client and a server network namespace joined by veth (internal/netns),
// drives connections from a load client (tgload) in the client namespace to
// a server in the other, with nothing, a bare NFQUEUE reader (tgbare) or
// tollgated deciding them, and reports rates, connect latencies, the
// decider's CPU time and memory, start-up time with many rules, and how
// well short-lived processes are attributed.
//
// It owns the benchmark's cases, their order and their figures. It must
// never touch the machine's own network namespace: every program that
// installs netfilter rules or reads a queue runs inside a namespace the
// harness created, and the namespaces are deleted when Run returns, also on
// failure and cancellation. It asserts nothing about speed: it measures.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/queue"
	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/internal/netns"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
)

// Options say how much to measure. Zero fields take the defaults of Full.
type Options struct {
	Bin       string // directory holding tollgated, tgload, tgbare and tgprobe
	Conns     int    // connections per case per round
	Rounds    int    // rounds; every round runs every case once, interleaved
	Workers   int    // load client connections in flight
	Idle      int    // idle established connections held open for case 3i
	Rules     int    // rules of case 4
	BigRules  int    // rules in the store for the memory and start-up figures
	ChurnN    int    // short-lived processes of the attribution figure
	ChurnM    int    // distinct executables among them
	ChurnPar  int    // of them running at once
	IdleCPU   time.Duration
	Progress  io.Writer // one line per step; nil: discard
	QueueNum  uint16
	KeepLevel string // daemon log_level during the measurement
	// ProfileDir, when set, makes every daemon case write a CPU profile
	// there (tollgated -cpuprofile), case-<id>.cpu.pprof, last round's.
	ProfileDir string
	// Only, when not empty, runs just these parts: case ids ("2", "3",
	// "3i"...), "memory" (memory and start-up) and "churn". Ratios need
	// case 2 among them.
	Only []string
}

// wants says whether part (a case id, "memory" or "churn") is to be run.
func (o Options) wants(part string) bool {
	return len(o.Only) == 0 || slices.Contains(o.Only, part)
}

// Full is the configuration of `make bench`.
func Full() Options {
	return Options{Conns: 20000, Rounds: 3, Workers: 8, Idle: 10000, Rules: 10000, BigRules: 100000,
		ChurnN: 2000, ChurnM: 20, ChurnPar: 32, IdleCPU: 10 * time.Second, QueueNum: 7467, KeepLevel: "warn"}
}

// Quick is a smoke version of Full that proves the harness works in well
// under a minute; its figures are too small to quote.
func Quick() Options {
	return Options{Conns: 1500, Rounds: 1, Workers: 4, Idle: 1000, Rules: 10000, BigRules: 20000,
		ChurnN: 100, ChurnM: 5, ChurnPar: 16, IdleCPU: time.Second, QueueNum: 7467, KeepLevel: "warn"}
}

// Ports the server namespace listens on.
const (
	portLoad  = 7000 // allowed load
	portFirst = 7001 // start-up probe: no rule covers it, the default rejects
)

// Case kinds.
const (
	kindNone   = "none"
	kindBare   = "bare"
	kindDaemon = "tollgated"
)

type caseSpec struct {
	ID, Name string
	kind     string
	config   string // extra TOML for the daemon
	rules    string // a rules.d file for the daemon
	idle     int
	logLevel string // daemon log_level; "": Options.KeepLevel
	ownIdle  int    // idle connections the load process itself holds
	conns    int    // connections of the measured run; 0: Options.Conns
	dir      string
}

// Round is one case's run in one round.
type Round struct {
	Connections int    `json:"connections"`
	Errors      int    `json:"errors"`
	FirstError  string `json:"first_error,omitempty"`
	// Resets: connections reset after the handshake (tgload run's Resets);
	// not the decider's doing in the cases, whose refusals drop the SYN.
	Resets     int     `json:"resets,omitzero"`
	FirstReset string  `json:"first_reset,omitempty"`
	PerSec     float64 `json:"per_sec"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	CPUSeconds float64 `json:"cpu_seconds"`           // of the decider (tgbare / tollgated) during the load
	Queued     uint32  `json:"queued"`                // packets the kernel queued during the load
	RSSReadyMB float64 `json:"rss_ready_mb,omitzero"` // decider's RSS when ready, before any load
	RSSAfterMB float64 `json:"rss_after_mb,omitzero"` // and after the load
}

// Case is one case's medians over its rounds.
type Case struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Decider     string  `json:"decider"`
	Rounds      []Round `json:"rounds"`
	PerSec      float64 `json:"per_sec"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	CPUPer1k    float64 `json:"cpu_seconds_per_1000_connections"` // 0 without a decider
	RatioPerSec float64 `json:"per_sec_vs_bare"`
	RatioP50    float64 `json:"p50_vs_bare"`
	Errors      int     `json:"errors"`
	Resets      int     `json:"resets,omitzero"`
}

// Memory holds the memory, idle CPU and start-up figures.
type Memory struct {
	Rules          int     `json:"rules"`
	ImportSeconds  float64 `json:"import_seconds"`
	StartupSeconds float64 `json:"startup_seconds"`  // exec to the first queued packet decided
	RSSIdleMB      float64 `json:"rss_idle_mb"`      // idle, with Rules rules in force
	RSSIdleAnonMB  float64 `json:"rss_idle_anon_mb"` // of which anonymous (heap, stacks)
	RSSIdleFileMB  float64 `json:"rss_idle_file_mb"` // and file-backed (binary, database mmap)
	RSSAfterMB     float64 `json:"rss_after_load_mb"`
	IdleCPUSeconds float64 `json:"idle_cpu_seconds"`
	IdleFor        float64 `json:"idle_for_seconds"`
	LoadConns      int     `json:"load_connections"`
	LoadPerSec     float64 `json:"load_per_sec"`
	LoadErrors     int     `json:"load_errors"`
	LoadFirstError string  `json:"load_first_error,omitempty"`
	LoadResets     int     `json:"load_resets,omitzero"` // reset after the handshake (see Round.Resets)
	LoadFirstReset string  `json:"load_first_reset,omitempty"`
	// LoadRefused counts the load's connections the daemon logged as not
	// allowed (none should be: the load's rule allows them).
	LoadRefused int    `json:"load_refused"`
	LoadLogged  int    `json:"load_logged"`        // the load's connections in the daemon's log
	Refusals    string `json:"refusals,omitempty"` // the first of them, and the daemon's warnings
}

// Churn is the attribution of short-lived processes.
type Churn struct {
	Processes   int     `json:"processes"`
	Executables int     `json:"executables"`
	Parallel    int     `json:"parallel"`
	Failed      int     `json:"failed"` // processes whose connection failed
	Logged      int     `json:"logged"` // their connections found in the log
	Right       int     `json:"right"`
	Unknown     int     `json:"unknown"`
	Wrong       int     `json:"wrong"`
	RightShare  float64 `json:"right_share"`
	Seconds     float64 `json:"seconds"`
}

// Target is one of the targets and whether this run met it.
type Target struct {
	What  string `json:"what"`
	Value string `json:"value"`
	Met   bool   `json:"met"`
}

// Results is everything one run measured.
type Results struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  string    `json:"machine"`
	CPUs     int       `json:"cpus"`
	Settings struct {
		Conns, Rounds, Workers, Idle, Rules int
		LogLevel                            string
	} `json:"settings"`
	Cases   []Case   `json:"cases"`
	Memory  *Memory  `json:"memory,omitempty"`
	Churn   *Churn   `json:"churn,omitempty"`
	Targets []Target `json:"targets"`
}

type env struct {
	ctx     context.Context
	o       Options
	pair    *netns.Pair
	dir     string
	bin     string
	loadExe string // tgload, as the daemon sees it
	server  *proctest.Proc
	say     func(format string, a ...any)
}

// Run measures everything o asks for and returns the figures. It needs root.
func Run(ctx context.Context, o Options) (res *Results, err error) {
	o = o.withDefaults()
	e := &env{ctx: ctx, o: o}
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	e.say = func(format string, a ...any) { fmt.Fprintf(out, "bench: "+format+"\n", a...) }
	if e.bin, err = filepath.Abs(o.Bin); err != nil {
		return nil, err
	}
	for _, b := range []string{"tollgated", "tgload", "tgbare", "tgprobe"} {
		if _, err := os.Stat(filepath.Join(e.bin, b)); err != nil {
			return nil, fmt.Errorf("binary %s: %w (make build, or go build ./internal/cmd/...)", b, err)
		}
	}
	if e.dir, err = os.MkdirTemp("", "tollgate-bench-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(e.dir)
	os.Chmod(e.dir, 0o755)
	e.loadExe = filepath.Join(e.dir, "tgload")
	if err := copyFile(filepath.Join(e.bin, "tgload"), e.loadExe); err != nil {
		return nil, err
	}

	if e.pair, err = netns.CreatePair("bench"); err != nil {
		return nil, err
	}
	defer e.pair.Delete()
	e.say("namespaces %s (client, %s) and %s (server, %s)", e.pair.Client, e.pair.ClientIP4, e.pair.Server, e.pair.ServerIP4)
	e.server, err = proctest.Start(exec.Command("ip", "netns", "exec", e.pair.Server, e.loadExe, "serve",
		"-addr", fmt.Sprintf(":%d,:%d", portLoad, portFirst)))
	if err != nil {
		return nil, err
	}
	defer e.server.Stop(syscall.SIGTERM, 5*time.Second)
	if err := e.server.WaitOutput(e.ctx, "ready", 10*time.Second); err != nil {
		return nil, err
	}

	res = &Results{Started: time.Now().UTC(), CPUs: runtime.NumCPU(), Machine: machine()}
	res.Settings.Conns, res.Settings.Rounds, res.Settings.Workers = o.Conns, o.Rounds, o.Workers
	res.Settings.Idle, res.Settings.Rules, res.Settings.LogLevel = o.Idle, o.Rules, o.KeepLevel

	cases, err := e.cases()
	if err != nil {
		return nil, err
	}
	rounds := make([][]Round, len(cases))
	for r := 0; r < o.Rounds; r++ {
		for i, c := range cases {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rd, err := e.runCase(c)
			if err != nil {
				return nil, fmt.Errorf("round %d, case %s (%s): %w", r+1, c.ID, c.Name, err)
			}
			e.say("round %d case %-2s %-44s %8.0f conn/s  p50 %6.0f µs  p99 %6.0f µs  cpu %.2fs  errors %d",
				r+1, c.ID, c.Name, rd.PerSec, rd.P50us, rd.P99us, rd.CPUSeconds, rd.Errors)
			rounds[i] = append(rounds[i], rd)
		}
	}
	for i, c := range cases {
		res.Cases = append(res.Cases, summarize(c, rounds[i]))
	}
	ratios(res.Cases)

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.wants("memory") {
		if res.Memory, err = e.memory(); err != nil {
			return nil, fmt.Errorf("memory and start-up: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.wants("churn") {
		if res.Churn, err = e.churn(); err != nil {
			return nil, fmt.Errorf("attribution under churn: %w", err)
		}
	}
	res.Targets = targets(res)
	res.Seconds = time.Since(res.Started).Seconds()
	return res, nil
}

func (o Options) withDefaults() Options {
	f := Full()
	if o.Conns <= 0 {
		o.Conns = f.Conns
	}
	if o.Rounds <= 0 {
		o.Rounds = f.Rounds
	}
	if o.Workers <= 0 {
		o.Workers = f.Workers
	}
	if o.Idle < 0 {
		o.Idle = 0
	}
	if o.Rules <= 0 {
		o.Rules = f.Rules
	}
	if o.BigRules <= 0 {
		o.BigRules = f.BigRules
	}
	if o.ChurnN <= 0 {
		o.ChurnN = f.ChurnN
	}
	if o.ChurnM <= 0 {
		o.ChurnM = f.ChurnM
	}
	if o.ChurnPar <= 0 {
		o.ChurnPar = f.ChurnPar
	}
	if o.IdleCPU <= 0 {
		o.IdleCPU = f.IdleCPU
	}
	if o.QueueNum == 0 {
		o.QueueNum = f.QueueNum
	}
	if o.KeepLevel == "" {
		o.KeepLevel = f.KeepLevel
	}
	return o
}

// cases lays out every case's directory, configuration and rules.
func (e *env) cases() ([]caseSpec, error) {
	allow := fmt.Sprintf("[[rule]]\nname = \"load\"\naction = \"allow\"\nexe = %q\nproto = \"tcp\"\nport = %d\n", e.loadExe, portLoad)
	cs := []caseSpec{
		{ID: "1", Name: "no interception (kernel alone)", kind: kindNone},
		{ID: "2", Name: "bare NFQUEUE reader, accepts all", kind: kindBare},
		{ID: "3", Name: "tollgated, 1 matching allow rule", kind: kindDaemon, config: `default_action = "deny"`, rules: allow},
		{ID: "4", Name: fmt.Sprintf("tollgated, %d rules, match not first", e.o.Rules), kind: kindDaemon, config: `default_action = "deny"`,
			rules: genRules(e.o.Rules, e.loadExe, portLoad)},
		{ID: "5", Name: "tollgated, no rules, default allow", kind: kindDaemon, config: `default_action = "allow"`},
		{ID: "6", Name: "tollgated, monitor mode (default deny)", kind: kindDaemon, config: "default_action = \"deny\"\nmode = \"monitor\""},
	}
	if e.o.KeepLevel != "info" {
		cs = append(cs, caseSpec{ID: "3l", Name: "case 3 with log_level = \"info\" (a line per decision)",
			kind: kindDaemon, config: `default_action = "deny"`, rules: allow, logLevel: "info"})
	}
	if e.o.Idle > 0 {
		cs = append(cs, caseSpec{ID: "3i", Name: fmt.Sprintf("case 3 + %d idle established conns", e.o.Idle),
			kind: kindDaemon, config: `default_action = "deny"`, rules: allow, idle: e.o.Idle})
	}
	if e.o.Idle > 0 {
		// The load client itself holds the idle connections: attribution
		// looks through the connecting process's descriptors. Fewer
		// connections, as this case is slow; the decider's CPU time here
		// includes deciding the idle connections, so it is not reported.
		n := max(e.o.Conns/5, 100)
		cs = append(cs, caseSpec{ID: "3p", Name: fmt.Sprintf("case 3, the load client holding %d idle conns itself (%d conns)", e.o.Idle/5, n),
			kind: kindDaemon, config: `default_action = "deny"`, rules: allow, ownIdle: e.o.Idle / 5, conns: n})
	}
	cs = slices.DeleteFunc(cs, func(c caseSpec) bool { return !e.o.wants(c.ID) })
	for i := range cs {
		c := &cs[i]
		if c.kind != kindDaemon {
			continue
		}
		c.dir = filepath.Join(e.dir, "case-"+c.ID)
		if err := e.daemonDir(c.dir, c.config, c.rules, c.logLevel); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// daemonDir writes a daemon's config.toml and rules.d into dir.
func (e *env) daemonDir(dir, extra, rules, level string) error {
	if level == "" {
		level = e.o.KeepLevel
	}
	if err := os.MkdirAll(filepath.Join(dir, "rules.d"), 0o755); err != nil {
		return err
	}
	// The proc connector lives in the initial network namespace: opening it
	// there gives the daemon the exec/exit events a real install has. The
	// bench's own namespace is the one it was started in (the machine's);
	// /proc/1/ns/net is not always readable (a sandboxed pid 1), and a
	// daemon that cannot open it re-reads /proc facts on every lookup,
	// which a real install does not.
	cfg := fmt.Sprintf(`database = %q
rules_dir = %q
log_level = %q
queue_num = %d
proc_events_netns = %q
%s
`, filepath.Join(dir, "tollgate.db"), filepath.Join(dir, "rules.d"), level, e.o.QueueNum, procEventsNetns(), extra)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	if rules != "" {
		return os.WriteFile(filepath.Join(dir, "rules.d", "bench.toml"), []byte(rules), 0o644)
	}
	return nil
}

func (e *env) target(port int) string {
	return net.JoinHostPort(e.pair.ServerIP4.String(), fmt.Sprint(port))
}

// loadResult is tgload run's output.
type loadResult struct {
	Connections int     `json:"connections"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error"`
	Resets      int     `json:"resets"`
	FirstReset  string  `json:"first_reset"`
	Seconds     float64 `json:"seconds"`
	PerSec      float64 `json:"per_sec"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
}

func (e *env) load(n, port int) (loadResult, error) { return e.loadIdle(n, port, 0) }

// loadIdle runs the load client, which first opens idle connections of its
// own and holds them through the run.
func (e *env) loadIdle(n, port, idle int) (loadResult, error) {
	var r loadResult
	client0, _ := netns.ReadCounters(e.pair.Client)
	server0, _ := netns.ReadCounters(e.pair.Server)
	err := runJSON(e.ctx, &r, "ip", "netns", "exec", e.pair.Client, e.loadExe, "run",
		"-addr", e.target(port), "-n", fmt.Sprint(n), "-workers", fmt.Sprint(e.o.Workers), "-idle", fmt.Sprint(idle))
	if err == nil && r.Errors+r.Resets > 0 && client0 != nil && server0 != nil {
		// Which side sent a reset, and why, is in the TCP counters.
		client1, err1 := netns.ReadCounters(e.pair.Client)
		server1, err2 := netns.ReadCounters(e.pair.Server)
		if err1 == nil && err2 == nil {
			counters := fmt.Sprintf(" (TCP counters during the load: client %s; server %s)",
				client1.Since(client0, "Tcp", "TcpExt"), server1.Since(server0, "Tcp", "TcpExt"))
			if r.Errors > 0 {
				r.FirstError += counters
			}
			if r.Resets > 0 {
				r.FirstReset += counters
			}
		}
	}
	return r, err
}

// startDecider starts what case c intercepts with and waits until its
// chains are in place; nil for case 1.
func (e *env) startDecider(c caseSpec) (*proctest.Proc, error) {
	var p *proctest.Proc
	var err error
	switch c.kind {
	case kindNone:
		return nil, nil
	case kindBare:
		p, err = proctest.Start(exec.Command("ip", "netns", "exec", e.pair.Client, filepath.Join(e.bin, "tgbare"), "-queue", fmt.Sprint(e.o.QueueNum)))
	case kindDaemon:
		// ip netns exec execs the program: the pid is the daemon's own.
		args := []string{"netns", "exec", e.pair.Client, filepath.Join(e.bin, "tollgated"), "-config", filepath.Join(c.dir, "config.toml")}
		if e.o.ProfileDir != "" && c.ID != "" {
			args = append(args, "-cpuprofile", filepath.Join(e.o.ProfileDir, "case-"+c.ID+".cpu.pprof"))
		}
		p, err = proctest.Start(exec.Command("ip", args...))
	}
	if err != nil {
		return nil, err
	}
	if err := e.waitChains(p, true, 60*time.Second); err != nil {
		p.Stop(syscall.SIGTERM, 10*time.Second)
		return nil, err
	}
	return p, nil
}

// stopDecider stops p and checks that it exited cleanly and took its
// chains with it.
func (e *env) stopDecider(p *proctest.Proc) error {
	if p == nil {
		return nil
	}
	if err := p.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(p.Args()[len(p.Args())-1]), err, tail(p.Output()))
	}
	if on, err := e.chainsOn(); err != nil || on {
		return fmt.Errorf("chains left behind after stop (%v)", err)
	}
	return nil
}

// chainsOn reports whether Tollgate's jump is in the client namespace's
// OUTPUT chain, for IPv4 and (where ip6tables works) IPv6.
func (e *env) chainsOn() (bool, error) {
	out, err := exec.Command("ip", "netns", "exec", e.pair.Client, "iptables", "-w", "-S", "OUTPUT").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("iptables -S: %w: %s", err, out)
	}
	if !strings.Contains(string(out), "TOLLGATE-OUT") {
		return false, nil
	}
	out6, err := exec.Command("ip", "netns", "exec", e.pair.Client, "ip6tables", "-w", "-S", "OUTPUT").CombinedOutput()
	if err == nil && !strings.Contains(string(out6), "TOLLGATE-OUT") {
		return false, nil
	}
	return true, nil
}

func (e *env) waitChains(p *proctest.Proc, want bool, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		on, err := e.chainsOn()
		if err != nil {
			return err
		}
		if on == want {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before its chains were in place: %v: %s", p.Args()[len(p.Args())-3], p.Wait(), tail(p.Output()))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chains not in place after %s: %s", d, tail(p.Output()))
		}
		if err := e.ctx.Err(); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// queueStats reads the kernel's counters of the benchmark's queue in the
// client namespace.
func (e *env) queueStats() (queue.Stats, error) {
	out, err := exec.Command("ip", "netns", "exec", e.pair.Client, "cat", queue.StatsPath).Output()
	if err != nil {
		return queue.Stats{}, fmt.Errorf("read queue statistics: %w", err)
	}
	return queue.ParseStats(strings.NewReader(string(out)), e.o.QueueNum)
}

// runCase runs one case once: start the decider, warm up, measure, stop.
func (e *env) runCase(c caseSpec) (rd Round, err error) {
	if c.idle > 0 {
		// Opened before the daemon starts (one process opening 10,000
		// sockets one by one under the daemon takes a minute: see the
		// README), and silent while idle (no keepalives), so the daemon
		// never sees them: they only populate the socket table.
		hold, err := proctest.Start(exec.Command("ip", "netns", "exec", e.pair.Client, e.loadExe, "hold", "-addr", e.target(portLoad), "-n", fmt.Sprint(c.idle)))
		if err != nil {
			return rd, err
		}
		defer hold.Stop(syscall.SIGTERM, 10*time.Second)
		if err := hold.WaitOutput(e.ctx, `"held"`, 120*time.Second); err != nil {
			return rd, err
		}
	}
	p, err := e.startDecider(c)
	if err != nil {
		return rd, err
	}
	defer func() {
		if serr := e.stopDecider(p); serr != nil && err == nil {
			err = serr
		}
	}()
	if p != nil {
		if rd.RSSReadyMB, err = rssMB(p.PID()); err != nil {
			return rd, err
		}
	}
	warm, err := e.load(min(500, e.o.Conns), portLoad)
	if err != nil {
		return rd, fmt.Errorf("warm-up: %w", err)
	}
	if warm.Errors > 0 {
		return rd, fmt.Errorf("warm-up: %d of %d connections failed: %s", warm.Errors, warm.Errors+warm.Connections, warm.FirstError)
	}
	var before, after queue.Stats
	var cpu0, cpu1 uint64
	if p != nil {
		if before, err = e.queueStats(); err != nil {
			return rd, err
		}
		if cpu0, err = cpuTicks(p.PID()); err != nil {
			return rd, err
		}
	}
	conns := e.o.Conns
	if c.conns > 0 {
		conns = c.conns
	}
	lr, err := e.loadIdle(conns, portLoad, c.ownIdle)
	if err != nil {
		return rd, err
	}
	rd = Round{Connections: lr.Connections, Errors: lr.Errors, FirstError: lr.FirstError, Resets: lr.Resets, FirstReset: lr.FirstReset,
		PerSec: lr.PerSec, P50us: lr.P50us, P99us: lr.P99us, RSSReadyMB: rd.RSSReadyMB}
	if p != nil {
		if cpu1, err = cpuTicks(p.PID()); err != nil {
			return rd, err
		}
		if after, err = e.queueStats(); err != nil {
			return rd, err
		}
		rd.CPUSeconds = float64(cpu1-cpu0) / clockTicks
		if c.ownIdle > 0 {
			rd.CPUSeconds = 0 // includes deciding the idle connections: not comparable
		}
		rd.Queued = after.IDSequence - before.IDSequence
		if int(rd.Queued) < lr.Connections+c.ownIdle {
			return rd, fmt.Errorf("only %d packets queued for %d connections: not intercepted", rd.Queued, lr.Connections)
		}
		if rd.RSSAfterMB, err = rssMB(p.PID()); err != nil {
			return rd, err
		}
	}
	return rd, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(c caseSpec, rounds []Round) Case {
	out := Case{ID: c.ID, Name: c.Name, Decider: c.kind, Rounds: rounds}
	var rate, p50, p99, cpu []float64
	for _, r := range rounds {
		rate = append(rate, r.PerSec)
		p50 = append(p50, r.P50us)
		p99 = append(p99, r.P99us)
		if r.Connections > 0 {
			cpu = append(cpu, r.CPUSeconds/float64(r.Connections)*1000)
		}
		out.Errors += r.Errors
		out.Resets += r.Resets
	}
	out.PerSec, out.P50us, out.P99us = median(rate), median(p50), median(p99)
	if c.kind != kindNone && c.ownIdle == 0 {
		out.CPUPer1k = median(cpu)
	}
	return out
}

// ratios fills every case's ratio to the bare reader (case 2).
func ratios(cs []Case) {
	var bare *Case
	for i := range cs {
		if cs[i].ID == "2" {
			bare = &cs[i]
		}
	}
	if bare == nil || bare.PerSec == 0 || bare.P50us == 0 {
		return
	}
	for i := range cs {
		cs[i].RatioPerSec = cs[i].PerSec / bare.PerSec
		cs[i].RatioP50 = cs[i].P50us / bare.P50us
	}
}

func caseByID(cs []Case, id string) *Case {
	for i := range cs {
		if cs[i].ID == id {
			return &cs[i]
		}
	}
	return nil
}

// memory stores BigRules rules, then measures start-up (exec to the first
// queued packet decided), idle RSS and CPU, and RSS after a load.
func (e *env) memory() (*Memory, error) {
	m := &Memory{Rules: e.o.BigRules}
	dir := filepath.Join(e.dir, "memory")
	allow := fmt.Sprintf("[[rule]]\nname = \"load\"\naction = \"allow\"\nexe = %q\nproto = \"tcp\"\nport = %d\n", e.loadExe, portLoad)
	if err := e.daemonDir(dir, `default_action = "reject"`, allow, ""); err != nil {
		return nil, err
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(genRules(e.o.BigRules, "", 0)), 0o644); err != nil {
		return nil, err
	}
	e.say("storing %d rules with tollgated --import-rules", e.o.BigRules)
	t0 := time.Now()
	if out, err := exec.CommandContext(e.ctx, filepath.Join(e.bin, "tollgated"), "-config", filepath.Join(dir, "config.toml"), "-import-rules", big).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("import rules: %w: %s", err, out)
	}
	m.ImportSeconds = time.Since(t0).Seconds()

	// The prober connects to a port no rule covers in a loop; before the
	// daemon's chains exist it gets through, the first packet the daemon
	// decides is rejected by the default.
	first, err := proctest.Start(exec.Command("ip", "netns", "exec", e.pair.Client, e.loadExe, "first", "-addr", e.target(portFirst), "-limit", "60s"))
	if err != nil {
		return nil, err
	}
	defer first.Stop(syscall.SIGTERM, 5*time.Second)
	// Let the prober reach its loop: its first connections succeed.
	time.Sleep(200 * time.Millisecond)
	if first.Exited() {
		return nil, fmt.Errorf("start-up prober exited before the daemon started: %v: %s", first.Wait(), first.Output())
	}
	args := []string{"netns", "exec", e.pair.Client, filepath.Join(e.bin, "tollgated"), "-config", filepath.Join(dir, "config.toml")}
	if e.o.ProfileDir != "" {
		args = append(args, "-cpuprofile", filepath.Join(e.o.ProfileDir, "memory.cpu.pprof"),
			"-memprofile", filepath.Join(e.o.ProfileDir, "memory.heap.pprof"))
	}
	start := time.Now()
	d, err := proctest.Start(exec.Command("ip", args...))
	if err != nil {
		return nil, err
	}
	defer d.Stop(syscall.SIGTERM, 30*time.Second)
	select {
	case <-first.Done():
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("no connection rejected within 60s of starting the daemon: %s", tail(d.Output()))
	}
	if err := first.Wait(); err != nil {
		return nil, fmt.Errorf("start-up prober: %v: %s", err, first.Output())
	}
	var fr struct {
		RefusedUnixNS int64 `json:"refused_unix_ns"`
	}
	if err := decodeLast(first.Output(), &fr); err != nil {
		return nil, err
	}
	m.StartupSeconds = time.Unix(0, fr.RefusedUnixNS).Sub(start).Seconds()
	if err := e.waitChains(d, true, 30*time.Second); err != nil {
		return nil, err
	}
	e.say("start-up with %d stored rules: %.3fs; idle for %s", e.o.BigRules, m.StartupSeconds, e.o.IdleCPU)
	// Settle, then measure idle: RSS and CPU over IdleCPU with no traffic.
	time.Sleep(time.Second)
	c0, err := cpuTicks(d.PID())
	if err != nil {
		return nil, err
	}
	t0 = time.Now()
	time.Sleep(e.o.IdleCPU)
	c1, err := cpuTicks(d.PID())
	if err != nil {
		return nil, err
	}
	m.IdleFor = time.Since(t0).Seconds()
	m.IdleCPUSeconds = float64(c1-c0) / clockTicks
	if m.RSSIdleMB, err = rssMB(d.PID()); err != nil {
		return nil, err
	}
	if m.RSSIdleAnonMB, err = statusMB(d.PID(), "RssAnon"); err != nil {
		return nil, err
	}
	if m.RSSIdleFileMB, err = statusMB(d.PID(), "RssFile"); err != nil {
		return nil, err
	}
	lr, err := e.load(e.o.Conns, portLoad)
	if err != nil {
		return nil, err
	}
	m.LoadConns, m.LoadPerSec, m.LoadErrors, m.LoadFirstError = lr.Connections, lr.PerSec, lr.Errors, lr.FirstError
	m.LoadResets, m.LoadFirstReset = lr.Resets, lr.FirstReset
	if m.RSSAfterMB, err = rssMB(d.PID()); err != nil {
		return nil, err
	}
	if err := e.stopDecider(d); err != nil {
		return nil, err
	}
	// Whether the daemon refused any of the load (its default here rejects)
	// is in its log: a reset after the handshake then was not its doing.
	if m.LoadLogged, m.LoadRefused, m.Refusals, err = refusals(dir, portLoad); err != nil {
		return nil, err
	}
	if m.LoadRefused > 0 || m.LoadErrors > 0 || m.LoadResets > 0 {
		m.Refusals += "; the daemon warned: " + notable(d.Output())
	}
	return m, nil
}

// churnResult is tgload churn's output.
type churnResult struct {
	Started  int            `json:"started"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	FirstErr string         `json:"first_error"`
	Exe      map[int]string `json:"exe"`
	Seconds  float64        `json:"seconds"`
}

// churn runs ChurnN short-lived copies of tgprobe from ChurnM paths, each
// connecting once, and checks the daemon's log for who it said they were.
func (e *env) churn() (*Churn, error) {
	dir := filepath.Join(e.dir, "churn")
	if err := e.daemonDir(dir, fmt.Sprintf("default_action = \"allow\"\nlog_max_entries = %d", e.o.ChurnN+10000), "", ""); err != nil {
		return nil, err
	}
	var exes []string
	for i := 0; i < e.o.ChurnM; i++ {
		p := filepath.Join(dir, fmt.Sprintf("app-%02d", i))
		if err := copyFile(filepath.Join(e.bin, "tgprobe"), p); err != nil {
			return nil, err
		}
		exes = append(exes, p)
	}
	d, err := e.startDecider(caseSpec{kind: kindDaemon, dir: dir})
	if err != nil {
		return nil, err
	}
	e.say("churn: %d processes from %d executables, %d at once", e.o.ChurnN, e.o.ChurnM, e.o.ChurnPar)
	var cr churnResult
	args := []string{"netns", "exec", e.pair.Client, e.loadExe, "churn", "-addr", e.target(portLoad),
		"-n", fmt.Sprint(e.o.ChurnN), "-parallel", fmt.Sprint(e.o.ChurnPar)}
	err = runJSON(e.ctx, &cr, "ip", append(args, exes...)...)
	if serr := e.stopDecider(d); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	entries, err := daemonLog(dir)
	if err != nil {
		return nil, err
	}
	c := &Churn{Processes: cr.Started, Executables: e.o.ChurnM, Parallel: e.o.ChurnPar, Failed: cr.Failed, Seconds: cr.Seconds}
	for _, entry := range entries {
		le := entry.Connection
		if le.RemotePort != portLoad || le.Direction != "out" {
			continue
		}
		c.Logged++
		switch want, ours := cr.Exe[le.PID]; {
		case le.PID == 0:
			c.Unknown++
		case ours && le.Exe == want:
			c.Right++
		default:
			c.Wrong++
		}
	}
	if c.Processes > 0 {
		c.RightShare = float64(c.Right) / float64(c.Processes)
	}
	if c.Logged != c.Processes {
		return c, fmt.Errorf("%d processes ran but %d of their connections are in the log", c.Processes, c.Logged)
	}
	return c, nil
}

func targets(r *Results) []Target {
	var ts []Target
	c2, c3, c4, c3i := caseByID(r.Cases, "2"), caseByID(r.Cases, "3"), caseByID(r.Cases, "4"), caseByID(r.Cases, "3i")
	if c2 != nil && c3 != nil {
		ts = append(ts,
			Target{"case 3 throughput ≥ 0.8× case 2", fmt.Sprintf("%.2f×", c3.RatioPerSec), c3.RatioPerSec >= 0.8},
			Target{"case 3 p50 ≤ 1.5× case 2", fmt.Sprintf("%.2f×", c3.RatioP50), c3.RatioP50 <= 1.5})
	}
	if c3 != nil && c4 != nil && c3.PerSec > 0 {
		x := c4.PerSec / c3.PerSec
		ts = append(ts, Target{"case 4 throughput within 10% of case 3", fmt.Sprintf("%.2f×", x), x >= 0.9 && x <= 1.1})
	}
	if c3 != nil && c3i != nil && c3.PerSec > 0 {
		x := c3i.PerSec / c3.PerSec
		ts = append(ts, Target{"idle sockets do not slow attribution (3i vs 3, within 10%)", fmt.Sprintf("%.2f×", x), x >= 0.9})
	}
	if c3p := caseByID(r.Cases, "3p"); c3 != nil && c3p != nil && c3.PerSec > 0 {
		x := c3p.PerSec / c3.PerSec
		ts = append(ts, Target{"sockets of the connecting process do not slow attribution (3p vs 3, within 10%)", fmt.Sprintf("%.2f×", x), x >= 0.9})
	}
	if m := r.Memory; m != nil {
		ts = append(ts,
			Target{fmt.Sprintf("RSS ≤ 50 MB at %d rules", m.Rules), fmt.Sprintf("%.1f MB idle, %.1f MB after load", m.RSSIdleMB, m.RSSAfterMB), m.RSSIdleMB <= 50 && m.RSSAfterMB <= 50},
			Target{fmt.Sprintf("start-up ≤ 0.5 s at %d rules", m.Rules), fmt.Sprintf("%.3f s", m.StartupSeconds), m.StartupSeconds <= 0.5})
	}
	if c := r.Churn; c != nil {
		ts = append(ts,
			Target{"attribution under churn: 0 wrong", fmt.Sprintf("%d wrong", c.Wrong), c.Wrong == 0},
			Target{"attribution under churn: ≥ 99.9% right", fmt.Sprintf("%.2f%%", 100*c.RightShare), c.RightShare >= 0.999})
	}
	return ts
}

func machine() string {
	var parts []string
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(l, "model name"); ok {
				parts = append(parts, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":")))
				break
			}
		}
	}
	parts = append(parts, fmt.Sprintf("%d CPUs", runtime.NumCPU()), runtime.Version())
	return strings.Join(parts, ", ")
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// daemonLog reads the connection log of the stopped daemon whose directory
// is dir, newest first.
func daemonLog(dir string) ([]shared.LogEntry, error) {
	st, err := store.Open(store.Options{Path: filepath.Join(dir, "tollgate.db"), LockTimeout: 5 * time.Second, ReadOnly: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("open the daemon's database: %w", err)
	}
	defer st.Close()
	return st.Log(store.LogFilter{})
}

// refusals counts the connections to port that the stopped daemon whose
// directory is dir logged, and of them those not allowed, and describes the
// newest five of those.
func refusals(dir string, port uint16) (logged, refused int, _ string, _ error) {
	entries, err := daemonLog(dir)
	if err != nil {
		return 0, 0, "", err
	}
	var out []string
	for _, le := range entries {
		c := le.Connection
		if c.RemotePort != port || c.Direction != shared.DirectionOut {
			continue
		}
		if logged++; le.Verdict.Action == shared.ActionAllow {
			continue
		}
		if refused++; refused <= 5 {
			out = append(out, fmt.Sprintf("%s %s %s from %s:%d, pid %d, exe %q: %s",
				c.Time.Format(time.RFC3339Nano), le.Verdict.Action, c.Proto, c.LocalIP, c.LocalPort, c.PID, c.Exe, le.Verdict.Reason))
		}
	}
	return logged, refused, strings.Join(out, "; "), nil
}

// notable picks from a daemon's output the lines that explain a failed
// connection: warnings, errors and decisions other than allow.
func notable(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") ||
			strings.Contains(l, "verdict=reject") || strings.Contains(l, "verdict=deny") {
			keep = append(keep, l)
		}
	}
	return tail(strings.Join(keep, "\n"))
}

func tail(s string) string {
	const n = 2000
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func decodeLast(out string, v any) error {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		return fmt.Errorf("decode %q: %w", out, err)
	}
	return nil
}

// procEventsNetns names the network namespace the daemon opens the proc
// connector in: pid 1's when it can be read, else this process's (the
// bench runs in the machine's namespace and creates its own for the rest).
func procEventsNetns() string {
	if _, err := os.Readlink("/proc/1/ns/net"); err == nil {
		return "/proc/1/ns/net"
	}
	return fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
}
