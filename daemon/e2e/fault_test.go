package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
)

// busClient dials the private bus and waits until the daemon answers
// GetStatus there.
func busClient(t *testing.T, addr string) *dbus.Client {
	t.Helper()
	ctx := context.Background()
	c, err := dbus.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("dial the private bus: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	var last error
	proctest.WaitFor(t, 15*time.Second, "the daemon on the bus", func() bool {
		_, last = c.GetStatus(ctx)
		return last == nil
	})
	return c
}

// ruleKey is a rule without the bookkeeping that changes as it is used.
func ruleKey(r shared.Rule) map[string]any {
	f := r.Fields()
	for _, k := range []string{"hits", "last_hit", "updated"} {
		delete(f, k)
	}
	return f
}

// chainsOf returns `tool -S` in the client namespace.
func (e *env) chainsOf(tool string) string {
	e.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", e.pair.Client, tool, "-w", "-S").CombinedOutput()
	if err != nil {
		e.t.Fatalf("%s -S: %v\n%s", tool, err, out)
	}
	return string(out)
}

// checkOneJumpPerChain fails unless every chain of ours exists once and is
// jumped to exactly once, for IPv4 and IPv6.
func (e *env) checkOneJumpPerChain() {
	e.t.Helper()
	for _, tool := range []string{"iptables", "ip6tables"} {
		s := e.chainsOf(tool)
		lines := strings.Split(s, "\n")
		count := func(line string) int {
			n := 0
			for _, l := range lines {
				if strings.TrimSpace(l) == line {
					n++
				}
			}
			return n
		}
		if n := count("-N TOLLGATE-OUT"); n != 1 {
			e.t.Errorf("%s: TOLLGATE-OUT declared %d times:\n%s", tool, n, s)
		}
		for _, h := range [][2]string{{"OUTPUT", "TOLLGATE-OUT"}, {"INPUT", "TOLLGATE-IN"}} {
			if count("-N "+h[1]) == 0 {
				continue
			}
			if n := count("-A " + h[0] + " -j " + h[1]); n != 1 {
				e.t.Errorf("%s: %d jumps from %s to %s, want exactly 1:\n%s", tool, n, h[0], h[1], s)
			}
		}
	}
}

// probeRun is one probe of a background load loop.
type probeRun struct {
	allowed    bool
	start, end time.Time
	r          result
}

// loadLoop runs probes of exe against addr until stop is closed.
func (e *env) loadLoop(wg *sync.WaitGroup, stop <-chan struct{}, mu *sync.Mutex, runs *[]probeRun, allowed bool, exe, addr string) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			r := e.connect(e.pair.Client, -1, exe, "tcp", addr, "-timeout", "700ms")
			mu.Lock()
			*runs = append(*runs, probeRun{allowed: allowed, start: start, end: time.Now(), r: r})
			mu.Unlock()
		}
	}()
}

// kill -9 under a steady load of allowed and denied connections: while the
// daemon is dead nothing new gets through (fail-closed), after the restart
// every rule is back, the chains are not doubled, the connection log reads
// back whole and in order, and a clean stop leaves no chain behind.
func TestIntegrationKillUnderLoadFailsClosedAndRecovers(t *testing.T) {
	e := newEnv(t)
	b := bustest.Start(t, false)
	e.busAddr = b.Addr
	allowed, denied := e.probe("allowed-client"), e.probe("denied-client")
	e.writeRules("10-allowed.toml", fmt.Sprintf("[[rule]]\nname = \"allowed client\"\naction = \"allow\"\nexe = %q\nport = %d\n", allowed, portA))
	const config = "polkit = false"
	e.start(config)
	ctx := context.Background()
	c := busClient(t, b.Addr)
	// Stored rules of several kinds, made over the bus.
	for i := 0; i < 20; i++ {
		uid := uint32(1000 + i)
		r := shared.Rule{Name: fmt.Sprintf("stored %d", i), Action: []shared.Action{shared.ActionAllow, shared.ActionDeny, shared.ActionReject}[i%3],
			Lifetime: shared.LifetimeForever, Owner: shared.OwnerSystem, Enabled: true, Priority: i % 4,
			Match: shared.Match{Exe: fmt.Sprintf("/opt/app%d/bin/app", i), UID: &uid, Proto: shared.ProtoTCP,
				Port: shared.PortRange{Lo: uint16(2000 + i), Hi: uint16(2000 + i)}}}
		if _, err := c.AddRule(ctx, r); err != nil {
			t.Fatalf("add rule %d: %v", i, err)
		}
	}
	before, err := c.ListRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) < 21 {
		t.Fatalf("ListRules before the kill: %d rules, want at least 21", len(before))
	}

	var (
		mu   sync.Mutex
		runs []probeRun
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)
	e.loadLoop(&wg, stop, &mu, &runs, true, allowed, e.srv4(portA))
	e.loadLoop(&wg, stop, &mu, &runs, false, denied, e.srv4(portA))
	okCount := func(after time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range runs {
			if r.allowed && r.r.code == codeOK && r.start.After(after) {
				n++
			}
		}
		return n
	}
	start1 := time.Now()
	proctest.WaitFor(t, 20*time.Second, "allowed connections under load", func() bool { return okCount(start1) >= 5 })

	// Some of it in the stored log (written every 250 ms): what the kill
	// may lose is the last batch only.
	proctest.WaitFor(t, 20*time.Second, "decisions in the stored connection log", func() bool {
		les, err := c.RecentConnections(ctx, shared.LogFilter{})
		return err == nil && len(les) >= 5
	})
	e.d.Stop(syscall.SIGKILL, 10*time.Second)
	killed := time.Now()
	// Fail-closed: the allowed port times out, for a direct probe and for
	// every probe of the loop that ran entirely while the daemon was dead.
	e.wantCode(e.connect(e.pair.Client, -1, allowed, "tcp", e.srv4(portA)), codeTimeout, "allowed exe while the daemon is dead")
	proctest.WaitFor(t, 10*time.Second, "a load probe while the daemon is dead", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range runs {
			if r.allowed && r.start.After(killed) {
				return true
			}
		}
		return false
	})
	restarted := time.Now()
	e.start(config)
	c = busClient(t, b.Addr)
	proctest.WaitFor(t, 20*time.Second, "allowed connections after the restart", func() bool { return okCount(restarted) >= 3 })
	stopLoad()

	var whileDead, allowedOK, deniedOK int
	for _, r := range runs {
		if r.start.After(killed) && r.end.Before(restarted) {
			whileDead++
			if r.r.code != codeTimeout {
				t.Errorf("probe (allowed %v) while the daemon was dead: %s", r.allowed, r.r)
			}
		}
		if r.r.code == codeOK {
			if r.allowed {
				allowedOK++
			} else {
				deniedOK++
			}
		}
	}
	if deniedOK > 0 {
		t.Errorf("%d connections of the denied client got through", deniedOK)
	}
	t.Logf("load: %d probes, %d allowed connections went through, %d probes ran while the daemon was dead (all timed out)", len(runs), allowedOK, whileDead)

	after, err := c.ListRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]shared.Rule{}
	for _, r := range after {
		byID[r.ID] = r
	}
	for _, r := range before {
		got, ok := byID[r.ID]
		if !ok {
			t.Errorf("rule %s (%s) lost in the crash", r.ID, r.Name)
			continue
		}
		if !reflect.DeepEqual(ruleKey(r), ruleKey(got)) {
			t.Errorf("rule %s changed in the crash:\nbefore %v\nafter  %v", r.ID, ruleKey(r), ruleKey(got))
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d rules before the kill, %d after the restart", len(before), len(after))
	}
	e.checkOneJumpPerChain()

	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit: %v\n%s", err, e.daemonLog())
	}
	if s := e.chains(); strings.Contains(s, "TOLLGATE") {
		t.Errorf("chains left after the clean stop:\n%s", s)
	}
	checkLog(t, e.logEntries(), killed, restarted, allowed, denied)
}

// checkLog checks the connection log across a crash: every entry decoded
// whole, ids unique, every time inside its run (before killed, after
// restarted), the second run's ids after the first's, and, within a run,
// the serial connections of each load loop (one executable, one probe at a
// time) stored in the order they were made, with increasing ids and
// non-decreasing times. (Connections of different loops may be decided
// concurrently by different workers, so across loops id and time order
// need not agree.)
func checkLog(t *testing.T, entries []shared.LogEntry, killed, restarted time.Time, serialExes ...string) {
	t.Helper()
	if len(entries) == 0 {
		t.Fatal("connection log empty")
	}
	slices.Reverse(entries) // oldest first, as stored
	seen := map[uint64]bool{}
	var runs [2][]shared.Connection
	for _, le := range entries {
		c := le.Connection
		if c.ID == 0 || c.Time.IsZero() || le.Verdict.Action == "" || c.Proto == "" || !c.RemoteIP.IsValid() {
			t.Errorf("log entry not whole: %+v", le)
		}
		if seen[c.ID] {
			t.Errorf("connection id %d logged twice", c.ID)
		}
		seen[c.ID] = true
		switch {
		case c.Time.Before(killed):
			runs[0] = append(runs[0], c)
		case c.Time.After(restarted):
			runs[1] = append(runs[1], c)
		default:
			t.Errorf("connection %d logged at %s, while the daemon was dead (%s..%s)", c.ID, c.Time, killed, restarted)
		}
	}
	var maxID [2]uint64
	minID := [2]uint64{^uint64(0), ^uint64(0)}
	for i, run := range runs {
		if len(run) == 0 {
			t.Errorf("run %d logged nothing", i+1)
		}
		last := map[string]shared.Connection{}
		for _, c := range run {
			maxID[i], minID[i] = max(maxID[i], c.ID), min(minID[i], c.ID)
			if !slices.Contains(serialExes, c.Exe) {
				continue
			}
			if p, ok := last[c.Exe]; ok && (c.ID <= p.ID || c.Time.Before(p.Time)) {
				t.Errorf("run %d, %s: connection %d at %s stored after connection %d at %s", i+1, filepath.Base(c.Exe),
					c.ID, c.Time.Format(time.RFC3339Nano), p.ID, p.Time.Format(time.RFC3339Nano))
			}
			last[c.Exe] = c
		}
	}
	if len(runs[0]) > 0 && len(runs[1]) > 0 && minID[1] <= maxID[0] {
		t.Errorf("ids of the second run (from %d) do not follow the first's (up to %d)", minID[1], maxID[0])
	}
	t.Logf("connection log: %d entries before the kill, %d after the restart", len(runs[0]), len(runs[1]))
}

// kill -9 in the middle of 1,000 concurrent AddRule calls: every rule
// whose call returned its id is there after the restart, and every stored
// rule is whole.
func TestIntegrationKillDuringAddRuleBurst(t *testing.T) {
	e := newEnv(t)
	b := bustest.Start(t, false)
	e.busAddr = b.Addr
	const config = "polkit = false"
	e.start(config)
	busClient(t, b.Addr)

	const total, workers = 1000, 16
	var (
		next    atomic.Int64
		mu      sync.Mutex
		acked   = map[string]shared.Rule{}
		failed  atomic.Int64
		wg      sync.WaitGroup
		tooSoon atomic.Bool
	)
	ruleFor := func(i int) shared.Rule {
		uid := uint32(2000 + i)
		return shared.Rule{Name: fmt.Sprintf("burst %04d", i), Action: shared.ActionAllow, Lifetime: shared.LifetimeForever,
			Owner: shared.OwnerSystem, Enabled: true, Note: strings.Repeat("x", i%200),
			Match: shared.Match{Exe: fmt.Sprintf("/opt/burst/%04d", i), UID: &uid, Proto: shared.ProtoTCP,
				Port: shared.PortRange{Lo: uint16(1 + i), Hi: uint16(1 + i)}}}
	}
	ctx := context.Background()
	for w := 0; w < workers; w++ {
		c, err := dbus.Dial(ctx, b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				r := ruleFor(i)
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				id, err := c.AddRule(cctx, r)
				cancel()
				if err != nil {
					failed.Add(1)
					return // the daemon is gone
				}
				r.ID = id
				mu.Lock()
				acked[id] = r
				mu.Unlock()
			}
		}()
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	proctest.WaitFor(t, 60*time.Second, "a third of the rules added", func() bool {
		if next.Load() >= total {
			tooSoon.Store(true)
			return true
		}
		return ackedCount() >= total/3
	})
	e.d.Stop(syscall.SIGKILL, 10*time.Second)
	wg.Wait()
	if tooSoon.Load() && ackedCount() == total {
		t.Log("every call was answered before the kill: the kill came after the burst")
	}
	t.Logf("burst: %d calls answered with an id before the kill, %d failed", len(acked), failed.Load())

	e.start(config)
	c := busClient(t, b.Addr)
	rules, err := c.ListRules(ctx)
	if err != nil {
		t.Fatalf("ListRules after the restart: %v", err)
	}
	stored := map[string]shared.Rule{}
	for _, r := range rules {
		if !strings.HasPrefix(r.Name, "burst ") {
			continue
		}
		stored[r.ID] = r
		if err := r.Validate(); err != nil {
			t.Errorf("stored rule %s does not validate: %v", r.ID, err)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(r.Name, "burst "))
		if err != nil {
			t.Errorf("stored rule %s has a mangled name %q", r.ID, r.Name)
			continue
		}
		want := ruleFor(n)
		if r.Match.Exe != want.Match.Exe || r.Match.Port != want.Match.Port || r.Match.UID == nil || *r.Match.UID != *want.Match.UID ||
			r.Note != want.Note || r.Action != want.Action || r.Lifetime != want.Lifetime {
			t.Errorf("stored rule %s is not what was sent:\n got %+v\nwant %+v", r.ID, r, want)
		}
	}
	for id, r := range acked {
		if _, ok := stored[id]; !ok {
			t.Errorf("rule %s (%s) was acknowledged but is gone after the restart", id, r.Name)
		}
	}
	t.Logf("after the restart: %d burst rules stored (%d acknowledged, %d in flight at the kill)", len(stored), len(acked), len(stored)-len(acked))
	e.checkOneJumpPerChain()
}

// lockWaiters counts the processes blocked in flock on the inode, from
// /proc/locks ("1: -> FLOCK  ADVISORY  WRITE 8477 fe:00:9977918 0 EOF").
func lockWaiters(t *testing.T, inode uint64) (holders, waiters int) {
	t.Helper()
	f, err := os.Open("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	suffix := ":" + strconv.FormatUint(inode, 10)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 7 && fields[1] == "->" && strings.HasSuffix(fields[6], suffix):
			waiters++
		case len(fields) >= 6 && fields[1] != "->" && strings.HasSuffix(fields[5], suffix):
			holders++
		}
	}
	return holders, waiters
}

// Another process holds the xtables lock when the daemon starts: the
// daemon's iptables waits on it and the daemon starts once it is released.
// Legacy backend only (iptables-nft takes no lock), on a private lock file
// named by XTABLES_LOCKFILE, never the machine's /run/xtables.lock.
func TestIntegrationXtablesLockHeldAtStart(t *testing.T) {
	e := newEnv(t)
	for _, c := range []string{"iptables-legacy", "ip6tables-legacy", "flock"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed", c)
		}
	}
	lock := filepath.Join(t.TempDir(), "xtables.lock")
	t.Setenv("XTABLES_LOCKFILE", lock)
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(lock, &st); err != nil {
		t.Fatal(err)
	}
	// The holder: flock keeps the lock while cat reads its standard input;
	// closing it releases the lock.
	holder := exec.Command("flock", "--exclusive", lock, "cat")
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	holderDone := make(chan struct{})
	var holderErr error
	go func() { holderErr = holder.Wait(); close(holderDone) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-holderDone:
		case <-time.After(5 * time.Second):
			holder.Process.Kill()
			<-holderDone
		}
	})
	proctest.WaitFor(t, 5*time.Second, "flock holding the lock", func() bool { h, _ := lockWaiters(t, st.Ino); return h == 1 })

	probe := e.probe("client")
	cfg := e.writeConfig(`iptables_backend = "legacy"`)
	d := startProc(t, "ip", "netns", "exec", e.pair.Client, filepath.Join(e.bin, "tollgated"), "-config", cfg)
	e.d = d
	proctest.WaitFor(t, 15*time.Second, "the daemon's iptables waiting on the lock", func() bool {
		if d.Exited() {
			t.Fatalf("tollgated exited while the lock was held: %v\n%s", d.Wait(), d.Output())
		}
		_, w := lockWaiters(t, st.Ino)
		return w >= 1
	})
	if strings.Contains(d.Output(), "tollgated running") {
		t.Fatalf("tollgated says it runs while its chains wait for the lock:\n%s", d.Output())
	}
	released := time.Now()
	stdin.Close()
	<-holderDone
	if holderErr != nil {
		t.Fatalf("flock: %v", holderErr)
	}
	if err := d.WaitOutput(t.Context(), "tollgated running", 15*time.Second); err != nil {
		t.Fatalf("tollgated after the lock was released: %v", err)
	}
	t.Logf("tollgated running %s after the lock was released", time.Since(released).Round(time.Millisecond))
	// It guards: no rule, so default deny.
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeTimeout, "after start behind the lock")
	if err := e.stop(d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit: %v\n%s", err, d.Output())
	}
	out, err := exec.Command("ip", "netns", "exec", e.pair.Client, "iptables-legacy", "-w", "-S").CombinedOutput()
	if err != nil || strings.Contains(string(out), "TOLLGATE") {
		t.Errorf("legacy chains after the stop: %v\n%s", err, out)
	}
}

// The database on a full file system: the daemon still decides every
// connection, says that it cannot write its connection log, and loses no
// stored rule.
func TestIntegrationFullDiskStillDecidesAndKeepsRules(t *testing.T) {
	e := newEnv(t)
	b := bustest.Start(t, false)
	e.busAddr = b.Addr
	// A tiny tmpfs for the database, mounted under this test's own
	// temporary directory (nothing else uses it) and detached at cleanup,
	// before the directory is removed. The daemon's `ip netns exec` mount
	// namespace is a copy that sees it.
	stateDir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tollgate-e2e", stateDir, "tmpfs", 0, "size=512k,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(stateDir, unix.MNT_DETACH) })
	allowed, denied := e.probe("allowed-client"), e.probe("denied-client")
	db := filepath.Join(stateDir, "tollgate.db")
	// writeConfig puts its own database line first; a second one would be
	// a duplicate key, so point it at the tmpfs by replacing it.
	start := func() {
		cfg := e.writeConfig("polkit = false")
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		data = []byte(strings.Replace(string(data), fmt.Sprintf("database = %q", filepath.Join(e.dir, "tollgate.db")), fmt.Sprintf("database = %q", db), 1))
		if err := os.WriteFile(cfg, data, 0o644); err != nil {
			t.Fatal(err)
		}
		d := startProc(t, "ip", "netns", "exec", e.pair.Client, filepath.Join(e.bin, "tollgated"), "-config", cfg)
		e.d = d
		if err := d.WaitOutput(t.Context(), "tollgated running", 15*time.Second); err != nil {
			t.Fatalf("start tollgated: %v", err)
		}
	}
	start()
	ctx := context.Background()
	c := busClient(t, b.Addr)
	if _, err := c.AddRule(ctx, shared.Rule{Name: "allowed client", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever,
		Owner: shared.OwnerSystem, Enabled: true, Match: shared.Match{Exe: allowed, Port: shared.PortRange{Lo: portA, Hi: portA}}}); err != nil {
		t.Fatal(err)
	}
	before, err := c.ListRules(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Fill the file system.
	filler, err := os.Create(filepath.Join(stateDir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !strings.Contains(err.Error(), "no space") {
				t.Fatalf("fill the tmpfs: %v", err)
			}
			break
		}
	}
	filler.Close()

	// Connections until the log write fails; every one decided right.
	var decided int
	proctest.WaitFor(t, 60*time.Second, "the daemon to report a failed log write", func() bool {
		e.wantCode(e.connect(e.pair.Client, -1, allowed, "tcp", e.srv4(portA), "-timeout", "1s"), codeOK, "allowed on a full disk")
		e.wantCode(e.connect(e.pair.Client, -1, denied, "tcp", e.srv4(portA), "-timeout", "300ms"), codeTimeout, "denied on a full disk")
		decided += 2
		return strings.Contains(e.daemonLog(), "write connection log")
	})
	if t.Failed() {
		return
	}
	logLine := ""
	for _, l := range strings.Split(e.daemonLog(), "\n") {
		if strings.Contains(l, "write connection log") {
			logLine = l
			break
		}
	}
	if !strings.Contains(logLine, "no space") || !strings.Contains(logLine, db) {
		t.Errorf("the log write error does not say no space and name the database: %s", logLine)
	}
	// Still deciding after the failure.
	e.wantCode(e.connect(e.pair.Client, -1, allowed, "tcp", e.srv4(portA)), codeOK, "allowed after the log write failed")
	e.wantCode(e.connect(e.pair.Client, -1, denied, "tcp", e.srv4(portA)), codeTimeout, "denied after the log write failed")
	t.Logf("%d connections decided before the log write failed: %s", decided, logLine)

	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit on a full disk: %v\n%s", err, e.daemonLog())
	}
	// Restart on the still-full disk: every rule is there.
	start()
	c = busClient(t, b.Addr)
	after, err := c.ListRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("%d rules before, %d after a restart on the full disk", len(before), len(after))
	}
	for i := range min(len(before), len(after)) {
		if !reflect.DeepEqual(ruleKey(before[i]), ruleKey(after[i])) {
			t.Errorf("rule changed:\nbefore %v\nafter  %v", ruleKey(before[i]), ruleKey(after[i]))
		}
	}
	e.wantCode(e.connect(e.pair.Client, -1, allowed, "tcp", e.srv4(portA)), codeOK, "stored rule after the restart on a full disk")
	// The database still opens and reads after a clean stop.
	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit: %v", err)
	}
	st, err := store.Open(store.Options{Path: db, LockTimeout: 2 * time.Second, MaxLogEntries: 1000}, nil)
	if err != nil {
		t.Fatalf("open the database after the full disk: %v", err)
	}
	defer st.Close()
	if _, err := st.Log(store.LogFilter{}); err != nil {
		t.Errorf("read the log after the full disk: %v", err)
	}
}
