package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/syncbuf"
	"github.com/tollgate-fw/tollgate/shared"
)

// promptRun runs `tollgate prompt` against h's fake with keys written to a
// pipe, as a terminal would.
type promptRun struct {
	t    *testing.T
	h    *harness
	keys *io.PipeWriter
	out  *syncbuf.Buffer
	errb *syncbuf.Buffer
	done chan int
}

func startPrompt(t *testing.T, h *harness, args ...string) *promptRun {
	t.Helper()
	return startPromptWith(t, h, nil, args...)
}

// startPromptWith is startPrompt with a change to the App (nil: none).
func startPromptWith(t *testing.T, h *harness, change func(*App), args ...string) *promptRun {
	t.Helper()
	r, w := io.Pipe()
	h.stdin = r
	p := &promptRun{t: t, h: h, keys: w, out: new(syncbuf.Buffer), errb: new(syncbuf.Buffer), done: make(chan int, 1)}
	app := h.app(p.out, p.errb, new([]string))
	if change != nil {
		change(app)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		w.Close()
	})
	go func() { p.done <- app.Run(ctx, append([]string{"prompt"}, args...)) }()
	waitFor(t, "agent registration", h.fake.isAgent)
	return p
}

func (p *promptRun) press(keys string) {
	p.t.Helper()
	if _, err := p.keys.Write([]byte(keys)); err != nil {
		p.t.Fatalf("press %q: %v", keys, err)
	}
}

func (p *promptRun) waitOut(s string) {
	p.t.Helper()
	waitFor(p.t, "output "+quote(s)+"\n--- output so far:\n"+p.out.String(), func() bool { return strings.Contains(p.out.String(), s) })
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func (p *promptRun) exit() int {
	p.t.Helper()
	select {
	case code := <-p.done:
		return code
	case <-time.After(10 * time.Second):
		p.t.Fatalf("prompt did not end; output:\n%s", p.out.String())
	}
	return -1
}

func pend(id uint64, exe, host string) shared.Pending {
	return shared.Pending{ID: id, Count: 1, Deadline: testNow.Add(30 * time.Second),
		Connection: shared.Connection{Direction: shared.DirectionOut, Proto: shared.ProtoTCP, UID: 1000, User: "alice",
			PID: 100 + int(id), Exe: exe, Cmdline: exe + " https://" + host, RemoteIP: netip.MustParseAddr("192.0.2.7"),
			RemotePort: 443, Hosts: []string{host}}}
}

func TestPromptAnswersFromKeys(t *testing.T) {
	h := newHarness()
	seedPending(h) // 7 and 9 wait before the prompt starts
	p := startPrompt(t, h)
	p.waitOut("--- connection #7 (3 attempts), default action in 25s")
	p.waitOut("/usr/bin/curl (pid 4242), user alice (1000)")
	p.waitOut("-> example.org:443 (93.184.216.34) tcp")
	p.waitOut("(1 more waiting)")

	p.press("A") // allow forever
	waitFor(t, "answer to 7", func() bool { return len(h.fake.answered()) == 1 })
	if a := h.fake.answered()[0]; a.PendingID != 7 || a.Action != shared.ActionAllow ||
		a.Lifetime != shared.LifetimeForever || a.Scope != shared.ScopeExeHostPort {
		t.Errorf("answer: %+v", a)
	}
	p.waitOut("#7: allow forever")
	p.waitOut("--- connection #9")

	// 9 is decided elsewhere (another agent, the timeout): dropped.
	h.fake.resolve(9, shared.ActionDeny)
	p.waitOut("#9 was decided elsewhere: deny")

	// New connections come as signals; the second one queues.
	h.fake.offer(pend(11, "/usr/bin/wget", "example.net"))
	p.waitOut("--- connection #11")
	p.waitOut("cmdline: /usr/bin/wget https://example.net")
	h.fake.offer(pend(12, "/usr/bin/ssh", "git.example"))
	p.waitOut("(queued #12: /usr/bin/ssh (pid 112) -> git.example:443 (192.0.2.7); 1 waiting)")

	p.press("?")
	p.waitOut("[A] allow forever")
	p.press("x")
	p.waitOut("unknown key 'x'")

	p.press("d") // deny once: 11
	waitFor(t, "answer to 11", func() bool { return len(h.fake.answered()) == 2 })
	p.waitOut("--- connection #12")
	p.press("\nn") // newline ignored; deny session: 12
	waitFor(t, "answer to 12", func() bool { return len(h.fake.answered()) == 3 })
	ans := h.fake.answered()
	if a := ans[1]; a.PendingID != 11 || a.Action != shared.ActionDeny || a.Lifetime != shared.LifetimeOnce {
		t.Errorf("answer to 11: %+v", a)
	}
	if a := ans[2]; a.PendingID != 12 || a.Action != shared.ActionDeny || a.Lifetime != shared.LifetimeSession {
		t.Errorf("answer to 12: %+v", a)
	}
	p.press("a")
	p.waitOut("nothing to answer")
	p.press("q")
	if code := p.exit(); code != ExitOK {
		t.Fatalf("exit %d: %s", code, p.errb.String())
	}
	if h.fake.isAgent() {
		t.Error("prompt did not unregister its agent")
	}
}

func TestPromptScopeAndGone(t *testing.T) {
	h := newHarness()
	p := startPrompt(t, h, "--scope", "exe-host")
	p.waitOut("waiting for connections")
	h.fake.offer(pend(20, "/usr/bin/curl", "a.example"))
	p.waitOut("answer (scope exe-host)")
	// Resolved without a signal reaching us: the answer finds it gone.
	h.fake.mu.Lock()
	h.fake.pending = nil
	h.fake.mu.Unlock()
	p.press("s")
	p.waitOut("#20 is no longer pending")
	h.fake.offer(pend(21, "/usr/bin/curl", "b.example"))
	p.waitOut("--- connection #21")
	p.press("s")
	waitFor(t, "answer to 21", func() bool { return len(h.fake.answered()) == 1 })
	if a := h.fake.answered()[0]; a.Scope != shared.ScopeExeHost || a.Lifetime != shared.LifetimeSession || a.Action != shared.ActionAllow {
		t.Errorf("answer: %+v", a)
	}
	p.keys.Close() // end of input ends the prompt
	if code := p.exit(); code != ExitOK {
		t.Fatalf("exit %d: %s", code, p.errb.String())
	}
}

func TestPromptDaemonGone(t *testing.T) {
	h := newHarness()
	p := startPrompt(t, h)
	p.waitOut("waiting for connections")
	close(h.fake.sigs) // the bus connection ends
	if code := p.exit(); code != ExitUnreachable {
		t.Fatalf("exit %d, want %d: %s", code, ExitUnreachable, p.errb.String())
	}
	if !strings.Contains(p.errb.String(), "systemctl start tollgated") {
		t.Errorf("stderr: %q", p.errb.String())
	}
}

func TestPromptJSON(t *testing.T) {
	h := newHarness()
	p := startPrompt(t, h, "--json")
	p.waitOut(`"event":"ready"`)
	h.fake.offer(pend(30, "/usr/bin/curl", "c.example"))
	p.waitOut(`"event":"pending"`)
	p.press("D")
	p.waitOut(`"event":"answered"`)
	h.fake.offer(pend(31, "/usr/bin/curl", "d.example"))
	p.waitOut(`"id":31`)
	h.fake.resolve(31, shared.ActionAllow)
	p.waitOut(`"event":"resolved"`)
	p.press("q")
	if code := p.exit(); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	var events []string
	for l := range strings.Lines(p.out.String()) {
		m := decodeJSON[map[string]any](t, l)
		events = append(events, m["event"].(string))
		if m["event"] == "answered" && (m["id"] != json.Number("30") || m["action"] != "deny" || m["lifetime"] != "forever") {
			t.Errorf("answered event: %v", m)
		}
	}
	if got := strings.Join(events, ","); got != "ready,pending,answered,pending,resolved,quit" {
		t.Errorf("events %s", got)
	}
}

func TestPromptDaemonRestart(t *testing.T) {
	h := newHarness()
	p := startPrompt(t, h)
	p.waitOut("waiting for connections")
	h.fake.offer(pend(50, "/usr/bin/curl", "a.example"))
	p.waitOut("--- connection #50")
	// The daemon goes: what it held is gone with it.
	h.fake.setPending(nil)
	h.fake.sigs <- dbus.Signal{Name: dbus.SignalDaemonChanged}
	p.waitOut("tollgated left the bus")
	p.press("a")
	p.waitOut("nothing to answer")
	// It comes back with a connection already waiting: register, list, show.
	h.fake.setPending([]shared.Pending{pend(60, "/usr/bin/ssh", "b.example")})
	h.fake.sigs <- dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.42"}
	p.waitOut("tollgated is back")
	p.waitOut("--- connection #60")
	if n := h.fake.registered(); n != 2 {
		t.Errorf("registered %d times, want 2", n)
	}
	p.press("D")
	waitFor(t, "answer to 60", func() bool { return len(h.fake.answered()) == 1 })
	p.press("q")
	if code := p.exit(); code != ExitOK {
		t.Fatalf("exit %d: %s", code, p.errb.String())
	}
}

func TestPromptShowsUnverifiedExe(t *testing.T) {
	h := newHarness()
	pd := pend(90, "", "example.org")
	pd.Connection.ExeClaimed = "/tmp/fake-browser"
	pd.Connection.Cmdline = ""
	p := startPrompt(t, h)
	p.waitOut("waiting for connections")
	h.fake.offer(pd)
	p.waitOut("/tmp/fake-browser (unverified) (pid 190), user alice (1000)")
	p.press("q")
	if code := p.exit(); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
}

// An answer the daemon refuses keeps the connection in the queue: the
// error is shown and another answer can be given.
func TestPromptRefusedAnswerKeepsConnection(t *testing.T) {
	h := newHarness()
	p := startPrompt(t, h)
	p.waitOut("waiting for connections")
	h.fake.offer(pend(95, "/usr/bin/curl", "example.org"))
	p.waitOut("--- connection #95")
	h.fake.setDeny(fmt.Errorf("Answer: %w", dbus.ErrNotAuthorized))
	p.press("A")
	p.waitOut("#95: not authorized")
	h.fake.setDeny(nil)
	p.press("d")
	waitFor(t, "answer to 95", func() bool { return len(h.fake.answered()) == 1 })
	if a := h.fake.answered()[0]; a.PendingID != 95 || a.Action != shared.ActionDeny || a.Lifetime != shared.LifetimeOnce {
		t.Errorf("answer: %+v", a)
	}
	p.waitOut("#95: deny once")
	p.press("q")
	if code := p.exit(); code != ExitOK {
		t.Fatalf("exit %d: %s", code, p.errb.String())
	}
}
