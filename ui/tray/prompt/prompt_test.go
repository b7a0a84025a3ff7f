package prompt

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	fdesktop "fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/agenttest"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
)

// fakeDaemon is the stand-in daemon the prompt's agent session talks to.
type fakeDaemon = agenttest.Daemon

var newFake = agenttest.New

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func pend(id uint64, host string) shared.Pending {
	return shared.Pending{ID: id, Count: 3, Since: t0, Deadline: t0.Add(30 * time.Second),
		Connection: shared.Connection{Direction: shared.DirectionOut, Proto: shared.ProtoTCP, UID: 1000, User: "alice",
			PID: 4242, PPID: 4200, Exe: "/usr/bin/curl", Cmdline: "curl https://" + host, RemoteIP: netip.MustParseAddr("93.184.216.34"),
			RemotePort: 443, Hosts: []string{host}, ExeSHA256: "0123abcd", Unit: "app-gnome-curl-1.scope", Attribution: shared.AttributedProcess}}
}

type apps map[string]desktop.App

func (a apps) Lookup(exe, _ string) (desktop.App, bool) {
	app, ok := a[exe]
	return app, ok
}

// harness runs a Prompt on a test app with a fake daemon and a clock the
// test moves. Widgets are touched under mu only: the prompt's UI calls
// (fyne.Do in the real app) run under it, and so does every test access.
type harness struct {
	t       *testing.T
	f       *fakeDaemon
	p       *Prompt
	mu      sync.Mutex
	now     time.Time
	changes []int
	done    chan error
}

func start(t *testing.T, f *fakeDaemon, o Options) *harness {
	t.Helper()
	a := test.NewTempApp(t)
	h := &harness{t: t, f: f, now: t0, done: make(chan error, 1)}
	o.Now = func() time.Time { return h.now } // read under mu (UI calls only)
	o.OnChange = func(n int) {
		h.mu.Lock()
		h.changes = append(h.changes, n)
		h.mu.Unlock()
	}
	h.p = New(a, f, o)
	h.p.ui = func(fn func()) {
		h.mu.Lock()
		defer h.mu.Unlock()
		fn()
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not end")
		}
	})
	return h
}

// ui runs fn with the widgets to itself.
func (h *harness) ui(fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn()
}

func (h *harness) advance(d time.Duration) { h.ui(func() { h.now = h.now.Add(d) }) }

// waitFor polls cond (run under mu) until it holds or the deadline passes.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		h.ui(func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var texts []string
			h.ui(func() { texts = visibleTexts(h.p.w.Content()) })
			h.t.Fatalf("timed out waiting for %s; window shows:\n%s", what, strings.Join(texts, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) shows(s string) bool {
	return slices.ContainsFunc(visibleTexts(h.p.w.Content()), func(x string) bool { return strings.Contains(x, s) })
}

func (h *harness) showsID(id uint64) bool {
	cur, ok := h.p.m.Current()
	return ok && cur.ID == id && h.p.visible
}

func (h *harness) press(name fyne.KeyName) {
	h.ui(func() { h.p.w.Canvas().OnTypedKey()(&fyne.KeyEvent{Name: name}) })
}

func (h *harness) typeRunes(s string) {
	h.ui(func() { test.TypeOnCanvas(h.p.w.Canvas(), s) })
}

// visibleTexts are the texts of the visible labels, buttons and check
// boxes under o.
func visibleTexts(o fyne.CanvasObject) []string {
	var out []string
	walk(o, func(o fyne.CanvasObject) {
		switch w := o.(type) {
		case *widget.Label:
			out = append(out, w.Text)
		case *widget.Button:
			out = append(out, w.Text)
		case *widget.Check:
			out = append(out, w.Text)
		case *keySelect:
			out = append(out, w.Selected)
		case *hoverText:
			out = append(out, w.label.Text)
		}
	})
	return out
}

func walk(o fyne.CanvasObject, fn func(fyne.CanvasObject)) {
	if o == nil || !o.Visible() {
		return
	}
	fn(o)
	switch c := o.(type) {
	case *fyne.Container:
		for _, x := range c.Objects {
			walk(x, fn)
		}
	case *container.ThemeOverride:
		walk(c.Content, fn)
	}
}

func TestWindowShowsFacts(t *testing.T) {
	f := newFake(pend(7, "example.org"), pend(8, "example.net"))
	h := start(t, f, Options{DaemonDefault: shared.ActionDeny, Apps: apps{"/usr/bin/curl": {Name: "cURL", Match: desktop.MatchExe, File: "/usr/share/applications/curl.desktop"}}})
	h.waitFor("the prompt for #7", func() bool { return h.showsID(7) })
	h.ui(func() {
		if !strings.HasPrefix(h.p.w.Title(), "Tollgate") {
			t.Errorf("title %q", h.p.w.Title())
		}
		for _, s := range []string{
			"cURL wants to connect to example.org:443", "1 more",
			"Remote", "example.org (93.184.216.34) · port 443 · tcp · outgoing",
			"Process", "/usr/bin/curl · pid 4242 · user alice (1000)",
			"Command", "curl https://example.org", "Seen", "3 attempts",
			"Once", "This host and port",
			"Denied in 30 s unless you answer", "Answers possible in 1.0s", "Enter: deny once", "Allow", "Deny",
		} {
			if !h.shows(s) {
				t.Errorf("window does not show %q:\n%s", s, strings.Join(visibleTexts(h.p.w.Content()), "\n"))
			}
		}
		for _, s := range []string{"0123abcd", "app-gnome-curl-1.scope", "4200"} {
			if h.shows(s) {
				t.Errorf("%q shown before Details is on", s)
			}
		}
		// Exactly one HighImportance button (Allow); Deny is Danger.
		var high, danger []string
		walk(h.p.w.Content(), func(o fyne.CanvasObject) {
			if b, ok := o.(*widget.Button); ok {
				switch b.Importance {
				case widget.HighImportance:
					high = append(high, b.Text)
				case widget.DangerImportance:
					danger = append(danger, b.Text)
				}
			}
		})
		if !slices.Equal(high, []string{"Allow"}) || !slices.Equal(danger, []string{"Deny"}) {
			t.Errorf("high importance %v, danger %v", high, danger)
		}
		test.Tap(h.p.detailsOn)
		for _, s := range []string{"SHA-256", "0123abcd", "Parent", "pid 4200 · unit app-gnome-curl-1.scope",
			"Found", "by the socket's process · desktop entry /usr/share/applications/curl.desktop"} {
			if !h.shows(s) {
				t.Errorf("details do not show %q", s)
			}
		}
	})
	// The countdown moves with the clock.
	h.advance(10 * time.Second)
	h.waitFor("the countdown at 20s", func() bool { return h.shows("Denied in 20 s unless you answer") && !h.shows("Answers possible") })
	// The daemon's default action changes: the countdown says so.
	h.p.SetDaemonDefault(shared.ActionReject)
	h.waitFor("the countdown naming reject", func() bool { return h.shows("Rejected in 20 s unless you answer") })

	// An unverified executable says so.
	u := pend(9, "example.com")
	u.Connection.Exe, u.Connection.ExeClaimed = "", "/tmp/fake-browser"
	f.Resolve(7)
	f.Resolve(8)
	f.Offer(u)
	h.waitFor("the prompt for #9", func() bool { return h.showsID(9) })
	h.ui(func() {
		if !h.shows("/tmp/fake-browser (unverified) · pid 4242 · user alice (1000)") || h.shows("1 more") {
			t.Errorf("window:\n%s", strings.Join(visibleTexts(h.p.w.Content()), "\n"))
		}
	})
}

func TestAllowForever(t *testing.T) {
	f := newFake(pend(7, "example.org"))
	h := start(t, f, Options{})
	h.waitFor("the prompt", func() bool { return h.showsID(7) })
	h.advance(2 * time.Second) // past the arming delay
	h.ui(func() {
		h.p.lifetime.SetSelected("Forever") // as a click on the radio does
		test.Tap(h.p.allow)
	})
	h.waitFor("the answer", func() bool { return len(f.Answered()) == 1 })
	want := shared.Answer{PendingID: 7, Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Scope: shared.ScopeExeHostPort}
	if a := f.Answered()[0]; a != want {
		t.Errorf("answer %+v, want %+v", a, want)
	}
	// The queue is empty: the window hides, the tray is told.
	h.waitFor("the window to hide", func() bool { return !h.p.visible && h.p.Waiting() == 0 })
	h.ui(func() {
		if !slices.Equal(h.changes, []int{1, 0}) {
			t.Errorf("OnChange calls %v, want [1 0]", h.changes)
		}
	})
}

func TestOneHourAndScope(t *testing.T) {
	f := newFake(pend(7, "example.org"))
	h := start(t, f, Options{ArmDelay: -1})
	h.waitFor("the prompt", func() bool { return h.showsID(7) })
	h.ui(func() {
		h.p.lifetime.SetSelected("1 hour")
		h.p.scope.SetSelected("Any app to this host")
		test.Tap(h.p.deny)
	})
	h.waitFor("the answer", func() bool { return len(f.Answered()) == 1 })
	want := shared.Answer{PendingID: 7, Action: shared.ActionDeny, Lifetime: shared.LifetimeUntil, Until: t0.Add(time.Hour), Scope: shared.ScopeAnyExeHost}
	if a := f.Answered()[0]; a != want {
		t.Errorf("answer %+v, want %+v", a, want)
	}
}

func TestKeys(t *testing.T) {
	f := newFake(pend(7, "example.org"), pend(8, "example.net"))
	h := start(t, f, Options{ArmDelay: time.Second})
	h.waitFor("the prompt", func() bool { return h.showsID(7) })

	// Within the arming delay keys and clicks do nothing.
	h.typeRunes("aAdD")
	h.press(fyne.KeyReturn)
	h.press(fyne.KeyEscape)
	h.ui(func() { test.Tap(h.p.allow); test.Tap(h.p.deny) })
	h.advance(999 * time.Millisecond)
	h.press(fyne.KeyEscape)
	h.ui(func() {
		if len(h.p.answers) != 0 || h.p.m.Busy() || h.p.m.Action() != shared.ActionDeny {
			t.Errorf("armed too early: %d answers sent, busy %v, action %s", len(h.p.answers), h.p.m.Busy(), h.p.m.Action())
		}
	})

	// Armed: Esc answers deny once.
	h.advance(time.Millisecond)
	h.press(fyne.KeyEscape)
	h.waitFor("deny once for #7", func() bool { return len(f.Answered()) == 1 })
	if a := f.Answered()[0]; a != (shared.Answer{PendingID: 7, Action: shared.ActionDeny, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}) {
		t.Errorf("Esc answered %+v", a)
	}

	// The next prompt is armed afresh; then A chooses allow and Enter confirms.
	h.waitFor("the prompt for #8", func() bool { return h.showsID(8) })
	h.typeRunes("a")
	h.press(fyne.KeyReturn)
	h.ui(func() {
		if len(h.p.answers) != 0 || h.p.m.Action() != shared.ActionDeny {
			t.Error("the next prompt took keys within its arming delay")
		}
	})
	h.advance(time.Second)
	h.typeRunes("a")
	h.waitFor("the choice shown", func() bool { return h.shows("Enter: allow once") })
	if n := len(f.Answered()); n != 1 {
		t.Fatalf("A alone answered (%d answers)", n)
	}
	h.press(fyne.KeyReturn)
	h.waitFor("allow once for #8", func() bool { return len(f.Answered()) == 2 })
	if a := f.Answered()[1]; a != (shared.Answer{PendingID: 8, Action: shared.ActionAllow, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}) {
		t.Errorf("A, Enter answered %+v", a)
	}
}

func TestQueueFollowsDaemon(t *testing.T) {
	f := newFake()
	h := start(t, f, Options{ArmDelay: -1})
	h.ui(func() {
		if h.p.visible {
			t.Error("window shown with nothing waiting")
		}
	})
	f.Offer(pend(1, "a.example"))
	h.waitFor("#1", func() bool { return h.showsID(1) })
	f.Offer(pend(2, "b.example"))
	h.waitFor("1 more", func() bool { return h.shows("1 more") })
	// A newer view of #1 (more attempts) updates it in place.
	p1 := pend(1, "a.example")
	p1.Count = 9
	f.Sigs <- dbus.Signal{Name: dbus.SignalConnectionPending, Pending: p1}
	h.waitFor("9 attempts", func() bool { return slices.Contains(visibleTexts(h.p.facts), "9 attempts") })
	// Resolved elsewhere: it leaves; the next one shows.
	f.Resolve(1)
	h.waitFor("#2", func() bool { return h.showsID(2) && !h.shows("1 more") })
	// The daemon leaves: nothing waits, the window hides.
	f.Set(func(f *fakeDaemon) { f.Pending = nil })
	f.Sigs <- dbus.Signal{Name: dbus.SignalDaemonChanged}
	h.waitFor("hidden", func() bool { return !h.p.visible && h.p.Waiting() == 0 })
	// It comes back with a connection waiting.
	f.Set(func(f *fakeDaemon) { f.Pending = []shared.Pending{pend(3, "c.example")} })
	f.Sigs <- dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.9"}
	h.waitFor("#3 after the restart", func() bool { return h.showsID(3) })
}

func TestDaemonAbsentAtStart(t *testing.T) {
	f := newFake(pend(4, "d.example"))
	f.RegisterErr = errors.New("org.freedesktop.DBus.Error.ServiceUnknown")
	h := start(t, f, Options{ArmDelay: -1})
	f.Set(func(f *fakeDaemon) { f.RegisterErr = nil })
	f.Sigs <- dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.2"}
	h.waitFor("#4 once the daemon appears", func() bool { return h.showsID(4) })
}

func TestAnswerErrorsShown(t *testing.T) {
	f := newFake(pend(5, "e.example"), pend(6, "f.example"))
	h := start(t, f, Options{ArmDelay: -1})
	h.waitFor("#5", func() bool { return h.showsID(5) })
	f.Set(func(f *fakeDaemon) { f.AnswerErr = fmt.Errorf("Answer: %w", dbus.ErrNotAuthorized) })
	h.ui(func() { test.Tap(h.p.allow) })
	h.waitFor("not authorized shown", func() bool { return h.shows("Not authorized to answer") && h.showsID(5) })
	// It stays and can be answered again.
	f.Set(func(f *fakeDaemon) { f.AnswerErr = nil; f.Pending = f.Pending[1:] }) // #5 decided meanwhile, no signal seen
	h.ui(func() { test.Tap(h.p.deny) })
	h.waitFor("already decided shown on the next prompt", func() bool { return h.showsID(6) && h.shows("already decided") })
	if n := len(f.Answered()); n != 0 {
		t.Errorf("answers %d", n)
	}
}

func TestShowBringsBackAHiddenWindow(t *testing.T) {
	f := newFake(pend(5, "e.example"))
	h := start(t, f, Options{})
	h.waitFor("#5", func() bool { return h.showsID(5) })
	h.ui(h.p.hide) // what closing the window does
	if h.p.Waiting() != 1 {
		t.Errorf("waiting %d after hiding", h.p.Waiting())
	}
	h.p.Show()
	h.ui(func() {
		if !h.p.visible {
			t.Error("Show did not show the window")
		}
	})
}

// fitted is the window's content's smallest size at the prompt's width,
// as a window manager would size it: laid out at that width until the
// wrapped labels settle.
func (h *harness) fitted() fyne.Size {
	var m fyne.Size
	for range 5 {
		m = h.p.w.Content().MinSize()
		h.p.w.Resize(fyne.NewSize(max(Width, m.Width), m.Height))
	}
	return m
}

// TestFitsALaptopScreen: the prompt, Allow and Deny included, fits a
// 1366×768 screen (with a panel) at the default theme's size, with long
// values everywhere, and with the details on.
func TestFitsALaptopScreen(t *testing.T) {
	long := pend(7, "a-rather-long-host-name.cdn.example-content-delivery.net")
	c := &long.Connection
	c.Hosts = append(c.Hosts, "second.example.org", "third.example.org", "fourth.example.org")
	c.HostSource = shared.HostFromAny
	c.Exe = "/home/alice/.local/share/Steam/ubuntu12_32/steam-runtime/usr/lib/x86_64-linux-gnu/helper-binary"
	c.Cmdline = "/usr/lib/firefox/firefox -contentproc -childID 12 -isForBrowser -prefsLen 31234 -prefMapSize 244787 " +
		"-jsInitLen 277276 -parentBuildID 20241120 -greomni /usr/lib/firefox/omni.ja -appomni /usr/lib/firefox/browser/omni.ja " +
		"-appDir /usr/lib/firefox/browser " + strings.Repeat("--flag=value ", 300)
	c.ExeSHA256 = strings.Repeat("0123456789abcdef", 4)
	c.Unit = "app-gnome-org.mozilla.firefox-4242.scope/very/deep/cgroup/path/for/the/process.scope"
	c.App = "flatpak:org.mozilla.firefox"
	c.LocalIP, c.LocalPort, c.Iface = netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1234:5678"), 54321, "wlp2s0"
	long.Count = 12
	f := newFake(long, pend(8, "example.net"))
	h := start(t, f, Options{DaemonDefault: shared.ActionDeny, Lifetime: shared.LifetimeForever,
		Apps: apps{c.Exe: {Name: "Steam Runtime Helper With A Long Name", Match: desktop.MatchBasename,
			File: "/home/alice/.local/share/flatpak/exports/share/applications/org.mozilla.firefox.desktop"}}})
	h.waitFor("the prompt", func() bool { return h.showsID(7) })
	var plain, details fyne.Size
	h.ui(func() {
		plain = h.fitted()
		h.p.detailsOn.SetChecked(true)
		details = h.fitted()
	})
	t.Logf("MinSize: %v without details, %v with", plain, details)
	if plain.Height > 480 || details.Height > 640 {
		t.Errorf("prompt too tall: %.0f px without details (max 480), %.0f px with (max 640)", plain.Height, details.Height)
	}
	if plain.Width > Width || details.Width > Width {
		t.Errorf("prompt wider than %d px: %.0f, %.0f", Width, plain.Width, details.Width)
	}
	if details.Height <= plain.Height {
		t.Errorf("details (%.0f px) do not add lines (%.0f px without)", details.Height, plain.Height)
	}
	// The whole command line is one hover away.
	h.ui(func() {
		var cmd *hoverText
		walk(h.p.w.Content(), func(o fyne.CanvasObject) {
			if ht, ok := o.(*hoverText); ok {
				cmd = ht
			}
		})
		if cmd == nil || len([]rune(cmd.label.Text)) > 80 || !strings.HasPrefix(cmd.label.Text, "/usr/lib/firefox/firefox -contentproc") {
			t.Fatalf("command line not shortened in a hover text: %+v", cmd)
		}
		cmd.MouseIn(nil)
		cmd.MouseOut() // the pop-up came over the label: it stays
		if !cmd.shown() || cmd.text.Text != c.Cmdline[:maxPopUpText]+"…" {
			t.Fatalf("hover shows %v %q", cmd.shown(), cmd.text.Text)
		}
		if p := cmd.pop.Position(); p.Y > h.p.w.Canvas().Size().Height/2 {
			t.Errorf("pop-up at %v, not over the command line", p)
		}
		cmd.pop.Content.(fdesktop.Hoverable).MouseOut()
		if cmd.shown() {
			t.Error("pop-up stays after the pointer left it")
		}
		cmd.Tapped(nil)
		if !cmd.shown() {
			t.Error("a tap does not show the whole command line")
		}
		cmd.pop.Content.(fyne.Tappable).Tapped(nil)
		if cmd.shown() {
			t.Error("a tap on the pop-up does not close it")
		}
	})
}

// TestChosenAnswerShown: A and D mark the button Enter answers with (an
// outline in its colour) and colour the "Enter: …" hint alike.
func TestChosenAnswerShown(t *testing.T) {
	f := newFake(pend(7, "example.org"))
	h := start(t, f, Options{ArmDelay: -1})
	h.waitFor("the prompt", func() bool { return h.showsID(7) })
	shown := func() (allow, deny bool, hint widget.Importance) {
		return h.p.allowMark.StrokeColor != color.Transparent, h.p.denyMark.StrokeColor != color.Transparent, h.p.enter.Importance
	}
	check := func(when string, wantAllow bool, wantHint string) {
		t.Helper()
		h.ui(func() {
			a, d, imp := shown()
			wantImp := widget.DangerImportance
			if wantAllow {
				wantImp = widget.HighImportance
			}
			if a != wantAllow || d == wantAllow || imp != wantImp || !h.shows(wantHint) {
				t.Errorf("%s: allow marked %v, deny marked %v, hint importance %v, shows %q: %v", when, a, d, imp, wantHint, h.shows(wantHint))
			}
		})
	}
	check("at first", false, "Enter: deny once")
	h.typeRunes("a")
	check("after A", true, "Enter: allow once")
	h.typeRunes("d")
	check("after D", false, "Enter: deny once")

	// Keys still answer while a choice has the keyboard focus (its menu
	// was opened and closed without a choice).
	h.ui(func() {
		h.p.w.Canvas().Focus(h.p.scope)
		h.p.lifetime.SetSelected("This session")
		h.p.w.Canvas().Focus(h.p.scope)
		if foc := h.p.w.Canvas().Focused(); foc != h.p.scope {
			t.Fatalf("focused: %T", foc)
		}
		h.p.w.Canvas().Focused().TypedRune('a') // as the window does with a focused object
	})
	check("after A with the scope focused", true, "Enter: allow this session")
	h.ui(func() { h.p.w.Canvas().Focused().TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn}) })
	h.waitFor("the answer", func() bool { return len(f.Answered()) == 1 })
	if a := f.Answered()[0]; a != (shared.Answer{PendingID: 7, Action: shared.ActionAllow, Lifetime: shared.LifetimeSession, Scope: shared.ScopeExeHostPort}) {
		t.Errorf("answer %+v", a)
	}
}
