package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"github.com/tollgate-fw/tollgate/shared"
)

// agent is a test's agent on the private bus: it registers and collects
// the daemon's signals.
type agent struct {
	t       *testing.T
	c       *dbus.Client
	signals <-chan dbus.Signal
	cancel  context.CancelFunc
}

func newAgent(t *testing.T, addr string) *agent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := dbus.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("dial the private bus: %v", err)
	}
	a := &agent{t: t, c: c, cancel: cancel}
	t.Cleanup(a.close)
	if a.signals, err = c.Signals(ctx); err != nil {
		t.Fatal(err)
	}
	// The daemon owns its name a moment after it runs.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := c.RegisterAgent(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("register agent: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return a
}

func (a *agent) close() {
	a.cancel()
	a.c.Close()
}

// nextPending waits for a ConnectionPending signal.
func (a *agent) nextPending(d time.Duration) (shared.Pending, bool) {
	a.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case s, ok := <-a.signals:
			if !ok {
				return shared.Pending{}, false
			}
			if s.Name == dbus.SignalConnectionPending {
				return s.Pending, true
			}
		case <-timeout:
			return shared.Pending{}, false
		}
	}
}

// connectAsync runs a probe connection in the background.
func (e *env) connectAsync(uid int, exe, network, addr string, extra ...string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- e.connect(e.pair.Client, uid, exe, network, addr, extra...) }()
	return ch
}

func TestIntegrationAgentAnswersHeldConnections(t *testing.T) {
	e := newEnv(t)
	b := bustest.Start(t, false)
	e.busAddr = b.Addr
	probe := e.probe("asked-client")
	// A long prompt timeout: everything below must happen by answer, not by timeout.
	e.start("prompt_timeout = \"60s\"\ndefault_action = \"reject\"\npolkit = false")
	ag := newAgent(t, b.Addr)
	ctx := context.Background()

	// 1. Allow forever: the held connection goes through, and the next one
	// needs no prompt.
	done := e.connectAsync(-1, probe, "tcp", e.srv4(portA), "-timeout", "20s")
	p, ok := ag.nextPending(10 * time.Second)
	if !ok {
		t.Fatalf("no ConnectionPending for a connection no rule covers\n%s", e.daemonLog())
	}
	if p.Connection.Exe != probe || p.Connection.RemotePort != portA || p.Connection.Direction != shared.DirectionOut {
		t.Errorf("pending connection %+v", p.Connection)
	}
	if err := ag.c.Answer(ctx, shared.Answer{PendingID: p.ID, Action: shared.ActionAllow,
		Lifetime: shared.LifetimeForever, Scope: shared.ScopeExeHostPort}); err != nil {
		t.Fatalf("answer: %v", err)
	}
	e.wantCode(<-done, codeOK, "held connection after allow forever")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "next connection, by the new rule")
	rules, err := ag.c.ListRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var made bool
	for _, r := range rules {
		if r.Match.Exe == probe && r.Match.Port.Lo == portA && r.Lifetime == shared.LifetimeForever && r.Action == shared.ActionAllow {
			made = true
		}
	}
	if !made {
		t.Errorf("no forever rule for the answer among %+v", rules)
	}
	ex, err := ag.c.Explain(ctx, shared.Connection{Exe: probe, Proto: shared.ProtoTCP, Direction: shared.DirectionOut,
		RemoteIP: e.pair.ServerIP4, RemotePort: portA})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Candidates) == 0 || ex.Candidates[0].Rule.Match.Exe != probe || !strings.Contains(ex.Text, ex.Candidates[0].Rule.ID) {
		t.Errorf("explain names no deciding rule: %+v", ex)
	}
	if ex, err = ag.c.Explain(ctx, shared.Connection{Exe: probe, Proto: shared.ProtoTCP, RemoteIP: e.pair.ServerIP4, RemotePort: portB}); err != nil || len(ex.Candidates) != 0 || !strings.Contains(ex.Text, "no rule") {
		t.Errorf("explain of an uncovered connection: %+v %v", ex, err)
	}

	// 2. Reject once: only that attempt fails, and no rule is made.
	done = e.connectAsync(-1, probe, "tcp", e.srv4(portB), "-timeout", "20s")
	if p, ok = ag.nextPending(10 * time.Second); !ok {
		t.Fatal("no ConnectionPending for port B")
	}
	if err := ag.c.Answer(ctx, shared.Answer{PendingID: p.ID, Action: shared.ActionReject,
		Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}); err != nil {
		t.Fatal(err)
	}
	e.wantCode(<-done, codeRefused, "rejected once")
	done = e.connectAsync(-1, probe, "tcp", e.srv4(portB), "-timeout", "20s")
	if _, ok = ag.nextPending(10 * time.Second); !ok {
		t.Fatal("a once answer left something behind: no new prompt for the next attempt")
	}

	// 3. The agent goes away while asked: the default applies at once
	// (reject here), long before the 60 s prompt timeout.
	start := time.Now()
	ag.close()
	r := <-done
	e.wantCode(r, codeRefused, "agent gone while asked")
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("default after the agent left took %s", took)
	}

	// 4. With no agent at all nothing is held: the default at once.
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portB)), codeRefused, "no agent")
	if !strings.Contains(e.daemonLog(), "agent gone") {
		t.Errorf("daemon log does not say the agent left:\n%s", e.daemonLog())
	}

	// 5. The log tells answered connections from those nobody could be
	// asked about (what the tray's notice and connection log read).
	c, err := dbus.Dial(ctx, b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var answered, unasked int
	deadline := time.Now().Add(15 * time.Second)
	for answered < 2 || unasked < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("log: %d answered, %d unasked entries; want 2 and 2", answered, unasked)
		}
		es, err := c.RecentConnections(ctx, shared.LogFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		answered, unasked = 0, 0
		for _, le := range es {
			v := le.Verdict
			if v.Answered && v.Unasked {
				t.Fatalf("an entry both answered and unasked: %+v", v)
			}
			if v.Answered && le.Connection.Exe == probe {
				answered++ // allow forever (port A), reject once (port B)
			}
			if v.Unasked && le.Connection.Exe == probe && v.Action == shared.ActionReject {
				unasked++ // agent gone while asked, no agent at all
			}
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a wait with a deadline
	}
}

// Another user's connection is never offered to root's agent unless that
// user is a system user; nobody (65534) is not.
func TestIntegrationAgentIsNotAskedAboutOtherUsers(t *testing.T) {
	e := newEnv(t)
	b := bustest.Start(t, false)
	e.busAddr = b.Addr
	probe := e.probe("client")
	e.start("prompt_timeout = \"60s\"\ndefault_action = \"reject\"\npolkit = false")
	ag := newAgent(t, b.Addr)
	e.wantCode(e.connect(e.pair.Client, 65534, probe, "tcp", e.srv4(portA)), codeRefused, "nobody's connection, nobody to ask")
	if p, ok := ag.nextPending(500 * time.Millisecond); ok {
		t.Errorf("root's agent was asked about nobody's connection: %+v", p)
	}
}
