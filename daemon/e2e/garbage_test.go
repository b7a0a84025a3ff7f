package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
)

// status asks the daemon for its status over the private bus.
func status(t *testing.T, c *dbus.Client) shared.Status {
	t.Helper()
	s, err := c.GetStatus(context.Background())
	if err != nil {
		t.Fatalf("GetStatus: %v", err)
	}
	return s
}

// Malformed and odd packets sent from the client namespace through raw
// sockets (truncated TCP headers, bad IHL and IPv4 options, bad UDP lengths,
// IPv6 extension header chains longer than the decoder walks, truncated
// extension headers, fragments of every kind, unknown protocol numbers):
// whatever of them conntrack calls NEW reaches the daemon's queue. Each gets
// a verdict (nothing is left waiting in the kernel queue, nothing stays
// pending), the daemon stays up, says which ones it could not decode, and
// goes on deciding real connections by their rules.
func TestIntegrationGarbagePacketsGetAVerdictAndNeverCrashTheDaemon(t *testing.T) {
	e := newEnv(t)
	b := bustest.Start(t, false)
	e.busAddr = b.Addr
	probe := e.probe("good-client")
	e.writeRules("10-probe.toml", fmt.Sprintf(`[[rule]]
name = "the good client"
action = "allow"
exe = %q
port = %d
proto = "tcp"
`, probe, portA))
	e.start("default_action = \"deny\"\npolkit = false\nprompt_timeout = \"2s\"")
	// An agent is registered, so garbage that decodes and that no rule
	// covers is held and asked about: it must still end, at the timeout.
	ag := newAgent(t, b.Addr)
	before := status(t, ag.c)

	out, err := runCmd("ip", "netns", "exec", e.pair.Client, filepath.Join(e.bin, "tgprobe"), "garbage",
		"-src4", e.pair.ClientIP4.String(), "-dst4", e.pair.ServerIP4.String(),
		"-src6", e.pair.ClientIP6.String(), "-dst6", e.pair.ServerIP6.String(), "-port", fmt.Sprint(portA))
	sent := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "sent ") {
			sent++
		}
	}
	t.Logf("tgprobe garbage: %d packets sent\n%s", sent, out)
	if err != nil || sent < 25 {
		t.Fatalf("only %d garbage packets left the raw sockets: %v\n%s", sent, err, out)
	}

	// Every packet the queue received gets its verdict: nothing waits in the
	// kernel queue and nothing stays pending (the prompt timeout is 2s; the
	// watchdog would act at 7s).
	var s shared.Status
	proctest.WaitFor(t, 30*time.Second, "kernel queue empty and nothing pending", func() bool {
		if e.d.Exited() {
			t.Fatalf("tollgated exited on garbage: %v\n%s", e.d.Wait(), e.daemonLog())
		}
		s = status(t, ag.c)
		return s.QueueWaiting == 0 && s.Pending == 0
	})
	if s.QueueDropped != before.QueueDropped || s.QueueUserDropped != before.QueueUserDropped {
		t.Errorf("the kernel dropped queued packets: before %+v, after %+v", before, s)
	}
	log := e.daemonLog()
	undecodable := strings.Count(log, "undecodable packet")
	decided := strings.Count(log, "msg=decided")
	t.Logf("daemon: %d undecodable, %d decided (status decided %d -> %d)", undecodable, decided, before.Decided, s.Decided)
	// The IPv6 SYNs behind 10 and 30 options headers are NEW TCP to
	// conntrack, which walks any number of headers; the decoder walks 8.
	if undecodable < 2 {
		t.Errorf("the daemon logged %d undecodable packets, want at least the two long IPv6 header chains\n%s", undecodable, log)
	}
	// Unknown protocols and oddly built but trackable packets are decided.
	if s.Decided <= before.Decided {
		t.Errorf("no garbage packet was decided: status before %+v after %+v\n%s", before, s, log)
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "panic") || strings.Contains(l, "level=ERROR") {
			t.Errorf("daemon log: %s", l)
		}
	}

	// The daemon still decides real connections by their rules.
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "the good client after the garbage")
	if e.d.Exited() {
		t.Fatalf("tollgated exited: %v\n%s", e.d.Wait(), e.daemonLog())
	}
}

// The connection log never grows past log_max_entries: with a bound of 5
// and 12 decisions, the log read over the bus while the daemon runs and the
// database left behind hold 5 entries, the newest.
func TestIntegrationConnectionLogStaysWithinLogMaxEntries(t *testing.T) {
	e := newEnv(t)
	b := bustest.Start(t, false)
	e.busAddr = b.Addr
	probe := e.probe("logged-client")
	e.writeRules("10-probe.toml", fmt.Sprintf(`[[rule]]
name = "logged client"
action = "allow"
exe = %q
port = %d
proto = "tcp"
`, probe, portA))
	const bound, conns = 5, 12
	e.start(fmt.Sprintf("log_max_entries = %d\npolkit = false", bound))
	c, err := dbus.Dial(context.Background(), b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	proctest.WaitFor(t, 15*time.Second, "daemon on the bus", func() bool { _, err := c.GetStatus(ctx); return err == nil })

	var starts []time.Time
	for i := range conns {
		starts = append(starts, time.Now())
		e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, fmt.Sprintf("connection %d", i))
		entries, err := c.RecentConnections(ctx, shared.LogFilter{Limit: 1000})
		if err != nil {
			t.Fatalf("RecentConnections: %v", err)
		}
		if len(entries) > bound {
			t.Fatalf("after %d connections the log holds %d entries, bound %d", i+1, len(entries), bound)
		}
	}
	// The last connection's entry is written within the flush interval.
	var entries []shared.LogEntry
	proctest.WaitFor(t, 10*time.Second, "the last connection in the log", func() bool {
		entries, err = c.RecentConnections(ctx, shared.LogFilter{Limit: 1000})
		if err != nil {
			t.Fatalf("RecentConnections: %v", err)
		}
		return len(entries) > 0 && !entries[0].Connection.Time.Before(starts[conns-1])
	})
	if len(entries) != bound {
		t.Errorf("log holds %d entries after %d connections, want the bound %d", len(entries), conns, bound)
	}
	for _, le := range entries {
		if le.Connection.Time.Before(starts[conns-bound]) {
			t.Errorf("an entry older than the newest %d connections was kept: %+v", bound, le.Connection)
		}
	}
	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, e.daemonLog())
	}
	if n := len(e.logEntries()); n != bound {
		t.Errorf("the database holds %d log entries after a clean stop, want %d", n, bound)
	}
}
