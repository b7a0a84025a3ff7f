package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"github.com/tollgate-fw/tollgate/internal/netns"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
)

// soakDefault is the soak's length in `make test`; `make soak` sets
// SOAK_DURATION (2m).
const soakDefault = 10 * time.Second

var (
	soakOnce sync.Once
	soakBin  string
	soakErr  error
)

// soakBinary builds internal/cmd/tgsoak once per test run.
func soakBinary(t *testing.T) string {
	t.Helper()
	soakOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-e2e-soak-")
		if err != nil {
			soakErr = err
			return
		}
		os.Chmod(dir, 0o755)
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", dir+"/", "./internal/cmd/tgsoak")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			soakErr = fmt.Errorf("build tgsoak: %v\n%s", err, out)
		}
		soakBin = filepath.Join(dir, "tgsoak")
	})
	if soakErr != nil {
		t.Fatal(soakErr)
	}
	return soakBin
}

// soakResult is what tgsoak prints.
type soakResult struct {
	Attempts   int     `json:"attempts"`
	OK         int     `json:"ok"`
	Refused    int     `json:"refused"`
	Timeout    int     `json:"timeout"`
	Other      int     `json:"other"`
	FirstOther string  `json:"first_other"`
	Reset      int     `json:"reset"` // after the handshake
	FirstReset string  `json:"first_reset"`
	Seconds    float64 `json:"seconds"`
}

// memStatus is the daemon's memory from /proc/PID/status, in bytes.
type memStatus struct {
	rss, anon, file uint64 // VmRSS, RssAnon, RssFile (the mapped database and the binary)
	threads         int
}

// procStatus reads the daemon's memory and thread count.
func procStatus(t *testing.T, pid int) (m memStatus) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the daemon's status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			m.rss = kb * 1024
		case "RssAnon:":
			m.anon = kb * 1024
		case "RssFile:":
			m.file = kb * 1024
		case "Threads:":
			m.threads = int(kb)
		}
	}
	if m.rss == 0 || m.anon == 0 || m.threads == 0 {
		t.Fatalf("no VmRSS, RssAnon or Threads in /proc/%d/status", pid)
	}
	return m
}

// TestIntegrationSoak holds a steady load of new connections through the
// daemon for SOAK_DURATION (10 s unless set; `make soak` runs 2m): allowed
// ones (a rule), denied ones (a reject rule, so that clients fail at once
// and keep the rate up) and pending ones (no rule: root's agent is asked
// and answers a third allow once, a third reject once, and lets a third
// time out, prompt_timeout 2s, default reject). It then checks what must
// hold however fast the machine is: every attempt a client made ended
// with a verdict (nothing timed out: no drop anywhere in this setup), the
// daemon decided at least as many connections as the clients saw end,
// nothing is held or waiting in the kernel queue at the end, and the
// daemon's memory did not grow without bound. It reports a table.
func TestIntegrationSoak(t *testing.T) {
	duration := soakDefault
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SOAK_DURATION=%q: want a positive duration like 2m", s)
		}
		duration = d
	}
	e := newEnv(t)
	tgsoak := soakBinary(t)
	b := bustest.Start(t, false)
	e.busAddr = b.Addr
	pendingPorts := []int{7100, 7101, 7102, 7103}
	var pendingAddrs []string
	for _, p := range pendingPorts {
		pendingAddrs = append(pendingAddrs, fmt.Sprintf(":%d", p))
	}
	e.startServer(e.pair.Server, pendingAddrs...)
	copyTo := func(name string) string {
		data, err := os.ReadFile(tgsoak)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(e.dir, name)
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	allowedExe, deniedExe, pendingExe := copyTo("soak-allowed"), copyTo("soak-denied"), copyTo("soak-pending")
	e.writeRules("10-soak.toml", fmt.Sprintf(`
[[rule]]
name = "soak allowed"
action = "allow"
exe = %q
port = %d

[[rule]]
name = "soak denied"
action = "reject"
exe = %q
port = %d
`, allowedExe, portA, deniedExe, portA))

	// A decision per log line would cost more than the decision: warn, as
	// the benchmarks run it.
	cfg := e.writeConfig("polkit = false\ndefault_action = \"reject\"\nprompt_timeout = \"2s\"")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), `log_level = "info"`, `log_level = "warn"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startProc(t, "ip", "netns", "exec", e.pair.Client, filepath.Join(e.bin, "tollgated"), "-config", cfg)
	e.d = d
	c := busClient(t, b.Addr)
	pid := d.PID()
	ctx := context.Background()
	st0, err := c.GetStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m0 := procStatus(t, pid)

	// Root's agent: answers two thirds of the prompts, lets the rest time out.
	ag := newAgent(t, b.Addr)
	var asked, answered, answerErrs atomic.Int64
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		for s := range ag.signals {
			if s.Name != dbus.SignalConnectionPending {
				continue
			}
			n := asked.Add(1)
			var action shared.Action
			switch n % 3 {
			case 0:
				action = shared.ActionAllow
			case 1:
				action = shared.ActionReject
			default:
				continue // left to time out
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := ag.c.Answer(actx, shared.Answer{PendingID: s.Pending.ID, Action: action,
				Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort})
			cancel()
			if err != nil {
				answerErrs.Add(1) // timed out already, or the agent is closing
			} else {
				answered.Add(1)
			}
		}
	}()

	// The load: three copies of tgsoak in the client namespace.
	srv := func(ports ...int) string {
		var a []string
		for _, p := range ports {
			a = append(a, e.srv4(p))
		}
		return strings.Join(a, ",")
	}
	type load struct {
		name, exe, addrs string
		workers          int
		p                *proctest.Proc
		r                soakResult
	}
	loads := []*load{
		{name: "allowed", exe: allowedExe, addrs: srv(portA), workers: 4},
		{name: "denied", exe: deniedExe, addrs: srv(portA), workers: 2},
		{name: "pending", exe: pendingExe, addrs: srv(pendingPorts...), workers: 4},
	}
	// The namespaces' TCP counters say, when a connection fails, which side
	// sent a reset and why.
	counters := func() (client, server netns.Counters) {
		var err error
		if client, err = netns.ReadCounters(e.pair.Client); err != nil {
			t.Fatal(err)
		}
		if server, err = netns.ReadCounters(e.pair.Server); err != nil {
			t.Fatal(err)
		}
		return client, server
	}
	client0, server0 := counters()
	start := time.Now()
	for _, l := range loads {
		l.p = startProc(t, "ip", "netns", "exec", e.pair.Client, l.exe, "-addr", l.addrs,
			"-workers", strconv.Itoa(l.workers), "-duration", duration.String(), "-timeout", "15s")
	}
	// A warm sample: the daemon's memory once it has decided warmDecided
	// connections (its heap has grown to its working size by then), or at
	// the end of the load if it never gets there.
	const warmDecided = 10_000
	var mWarm memStatus
	var warmAt uint64
	proctest.WaitFor(t, duration+60*time.Second, "the warm sample", func() bool {
		st, err := c.GetStatus(ctx)
		if err == nil && st.Decided >= warmDecided || loads[0].p.Exited() {
			mWarm, warmAt = procStatus(t, pid), st.Decided
			return true
		}
		return false
	})
	for _, l := range loads {
		select {
		case <-l.p.Done():
		case <-time.After(duration + 60*time.Second):
			t.Fatalf("tgsoak %s still running %s after its end", l.name, 60*time.Second)
		}
		if l.p.Wait() != nil {
			t.Fatalf("tgsoak %s: %v\n%s", l.name, l.p.Wait(), l.p.Output())
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(l.p.Output())), &l.r); err != nil {
			t.Fatalf("tgsoak %s printed %q: %v", l.name, l.p.Output(), err)
		}
	}
	took := time.Since(start)
	client1, server1 := counters()

	// Nothing may stay held: prompts end by answer or by their timeout,
	// the watchdog steps in at prompt_timeout + 5 s.
	var st1 shared.Status
	proctest.WaitFor(t, 30*time.Second, "no pending connection and an empty kernel queue", func() bool {
		st1, err = c.GetStatus(ctx)
		return err == nil && st1.Pending == 0 && st1.QueueWaiting == 0
	})
	pend, err := c.ListPending(ctx)
	if err != nil || len(pend) != 0 {
		t.Errorf("ListPending at the end: %d groups, %v", len(pend), err)
	}
	m1 := procStatus(t, pid)
	dbInfo, err := os.Stat(filepath.Join(e.dir, "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	dbSize := uint64(dbInfo.Size())
	ag.close()
	<-agentDone

	var total soakResult
	var tb strings.Builder
	fmt.Fprintf(&tb, "soak %s (%s with the drain), daemon pid %d\n", duration, took.Round(time.Second), pid)
	fmt.Fprintf(&tb, "| load | workers | attempts | ok | refused | reset after handshake | timeout | other | conn/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range loads {
		r := l.r
		fmt.Fprintf(&tb, "| %s | %d | %d | %d | %d | %d | %d | %d | %.0f |\n", l.name, l.workers, r.Attempts, r.OK, r.Refused, r.Reset, r.Timeout, r.Other, float64(r.Attempts)/r.Seconds)
		total.Attempts += r.Attempts
		total.OK += r.OK
		total.Refused += r.Refused
		total.Timeout += r.Timeout
		total.Other += r.Other
		total.Reset += r.Reset
		if r.Timeout > 0 {
			t.Errorf("%s: %d connections timed out: a packet got no verdict (nothing in this setup drops)", l.name, r.Timeout)
		}
		if r.Other > 0 {
			t.Errorf("%s: %d connections failed otherwise, first: %s", l.name, r.Other, r.FirstOther)
		}
		// A reset after the handshake is not a verdict (those refuse the
		// SYN); the daemon's log below shows it refused none of the
		// allowed load. Rarely a loaded kernel resets one anyway.
		if r.Reset > max(1, r.Attempts/10_000) {
			t.Errorf("%s: %d connections reset after the handshake, first: %s", l.name, r.Reset, r.FirstReset)
		} else if r.Reset > 0 {
			t.Logf("%s: %d connections reset after the handshake, first: %s", l.name, r.Reset, r.FirstReset)
		}
		if r.Other > 0 || r.Timeout > 0 || r.Reset > 0 {
			t.Logf("TCP counters during the load: client namespace: %s\nserver namespace: %s",
				client1.Since(client0, "Tcp", "TcpExt"), server1.Since(server0, "Tcp", "TcpExt"))
		}
		if r.Attempts == 0 {
			t.Errorf("%s: no connection attempted", l.name)
		}
	}
	fmt.Fprintf(&tb, "| all | | %d | %d | %d | %d | %d | %d | %.0f |\n", total.Attempts, total.OK, total.Refused, total.Reset, total.Timeout, total.Other, float64(total.Attempts)/duration.Seconds())
	if denied := loads[1]; denied.r.OK+denied.r.Reset > 0 {
		t.Errorf("denied: %d connections got through (%d of them then reset)", denied.r.OK+denied.r.Reset, denied.r.Reset)
	}

	decided := st1.Decided - st0.Decided
	fmt.Fprintf(&tb, "\n| daemon | start (idle) | warm (%d decided) | end |\n|---|---:|---:|---:|\n", warmAt)
	fmt.Fprintf(&tb, "| decided (allowed / denied) | %d (%d / %d) | | %d (%d / %d) |\n", st0.Decided, st0.Allowed, st0.Denied, st1.Decided, st1.Allowed, st1.Denied)
	fmt.Fprintf(&tb, "| pending groups | %d | | %d |\n", st0.Pending, st1.Pending)
	fmt.Fprintf(&tb, "| kernel queue waiting (dropped, user dropped) | %d (%d, %d) | | %d (%d, %d) |\n",
		st0.QueueWaiting, st0.QueueDropped, st0.QueueUserDropped, st1.QueueWaiting, st1.QueueDropped, st1.QueueUserDropped)
	mb := func(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	fmt.Fprintf(&tb, "| RSS | %s | %s | %s |\n", mb(m0.rss), mb(mWarm.rss), mb(m1.rss))
	fmt.Fprintf(&tb, "| RSS anonymous (heap, stacks) | %s | %s | %s |\n", mb(m0.anon), mb(mWarm.anon), mb(m1.anon))
	fmt.Fprintf(&tb, "| RSS file-backed (mapped database, binary) | %s | %s | %s |\n", mb(m0.file), mb(mWarm.file), mb(m1.file))
	fmt.Fprintf(&tb, "| database file (connection log, log_max_entries) | | | %s |\n", mb(dbSize))
	fmt.Fprintf(&tb, "| OS threads (no goroutine count is exposed) | %d | %d | %d |\n", m0.threads, mWarm.threads, m1.threads)
	fmt.Fprintf(&tb, "\nagent: asked %d times, answered %d, %d answers too late; %.0f decisions/s\n",
		asked.Load(), answered.Load(), answerErrs.Load(), float64(decided)/took.Seconds())
	t.Log("\n" + tb.String())

	if decided < uint64(total.OK+total.Refused) {
		t.Errorf("daemon decided %d connections, but the clients saw %d end with a verdict", decided, total.OK+total.Refused)
	}
	if st1.Allowed-st0.Allowed < uint64(total.OK) {
		t.Errorf("daemon allowed %d connections, but %d went through", st1.Allowed-st0.Allowed, total.OK)
	}
	if st1.Decided != st1.Allowed+st1.Denied {
		t.Errorf("decided %d != allowed %d + denied %d", st1.Decided, st1.Allowed, st1.Denied)
	}
	if asked.Load() == 0 {
		t.Error("the agent was never asked: no pending connections in the mix")
	}
	// Memory must not grow without bound: the heap stays within 2× its
	// warm size + 20 MB, and what is file-backed is the mapped database,
	// whose connection log is bounded (log_max_entries), and the binary.
	if limit := 2*mWarm.anon + 20<<20; m1.anon > limit {
		t.Errorf("daemon anonymous RSS grew from %s (warm) to %s (limit 2× warm + 20 MB = %s)", mb(mWarm.anon), mb(m1.anon), mb(limit))
	}
	if limit := m0.file + dbSize + 20<<20; m1.file > limit {
		t.Errorf("daemon file-backed RSS grew from %s to %s, more than the database file (%s) + 20 MB", mb(m0.file), mb(m1.file), mb(dbSize))
	}
	if d.Exited() {
		t.Fatalf("the daemon exited during the soak: %v\n%s", d.Wait(), d.Output())
	}
	// Every verdict as the rules say, by the log (log_max_entries keeps the
	// newest 100,000): the allowed load never refused, the denied load
	// never allowed.
	if err := e.stop(d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit: %v", err)
	}
	wrong := map[string]int{}
	for _, le := range e.allLogEntries() {
		switch exe, allowed := le.Connection.Exe, le.Verdict.Action == shared.ActionAllow; {
		case exe == allowedExe && !allowed, exe == deniedExe && allowed:
			if wrong[exe]++; wrong[exe] <= 3 {
				t.Errorf("logged against its rule: %s %s from port %d: %s", exe, le.Verdict.Action, le.Connection.LocalPort, le.Verdict.Reason)
			}
		}
	}
	if len(wrong) > 0 {
		t.Errorf("verdicts against the rules: %v", wrong)
	}
}
