package tray

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/tollgate-fw/tollgate/assets"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// testTray is a tray on Fyne's test app and a fake daemon. Fyne's test
// driver runs fyne.Do at once on the caller's goroutine, so the tray's UI
// work and the test's reads of the menu take turns under uiMu.
type testTray struct {
	*App
	fa   fyne.App
	fake *fakeSession

	uiMu   sync.Mutex
	noteMu sync.Mutex
	notes  []*fyne.Notification
}

func newTestTray(t *testing.T, fake *fakeSession, mode WindowMode) *testTray {
	t.Helper()
	return newTestTrayWith(t, fake, Options{StatusWindow: mode}, nil)
}

// newTestTrayWith is newTestTray with more options (UID, Dial and
// ArmDelay are the test's) and a function run on the tray before Start.
func newTestTrayWith(t *testing.T, fake *fakeSession, o Options, before func(*App)) *testTray {
	t.Helper()
	fa := test.NewTempApp(t)
	d := &dialer{}
	d.push(fake)
	tt := &testTray{fa: fa, fake: fake}
	o.UID, o.Dial, o.ArmDelay = 1000, d.dial, -1
	a, err := New(fa, o)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(a)
	}
	tt.App = a
	a.ui = func(f func()) {
		tt.uiMu.Lock()
		defer tt.uiMu.Unlock()
		f()
	}
	a.notify = func(n *fyne.Notification) {
		tt.noteMu.Lock()
		defer tt.noteMu.Unlock()
		tt.notes = append(tt.notes, n)
	}
	a.bus.minWait, a.bus.maxWait = time.Millisecond, 5*time.Millisecond
	tt.onUI(func() { a.Start(t.Context()) })
	t.Cleanup(func() {
		a.Stop()
		tt.onUI(func() {
			a.rules.Close()
			a.conns.Close()
		})
		// Their goroutines must not outlive the test (Fyne's test driver
		// shares font caches between tests).
		a.rules.Wait()
		a.conns.Wait()
	})
	return tt
}

func (tt *testTray) onUI(f func()) {
	tt.uiMu.Lock()
	defer tt.uiMu.Unlock()
	f()
}

func (tt *testTray) notifications() []string {
	tt.noteMu.Lock()
	defer tt.noteMu.Unlock()
	var out []string
	for _, n := range tt.notes {
		out = append(out, n.Title+": "+n.Content)
	}
	return out
}

// menuText renders the menu as lines: label, [x] when checked, (off)
// when disabled, children indented.
func menuText(m *fyne.Menu, indent string) string {
	var b strings.Builder
	for _, it := range m.Items {
		if it.IsSeparator {
			b.WriteString(indent + "---\n")
			continue
		}
		line := indent + it.Label
		if it.Checked {
			line += " [x]"
		}
		if it.Disabled {
			line += " (off)"
		}
		b.WriteString(line + "\n")
		if it.ChildMenu != nil {
			b.WriteString(menuText(it.ChildMenu, indent+"  "))
		}
	}
	return b.String()
}

func (tt *testTray) menu(t *testing.T) string {
	t.Helper()
	var s string
	tt.onUI(func() { s = menuText(tt.Menu(), "") })
	return s
}

func (tt *testTray) item(label string) *fyne.MenuItem {
	var found *fyne.MenuItem
	var walk func(*fyne.Menu)
	walk = func(m *fyne.Menu) {
		for _, it := range m.Items {
			if it.Label == label {
				found = it
			}
			if it.ChildMenu != nil {
				walk(it.ChildMenu)
			}
		}
	}
	tt.onUI(func() { walk(tt.Menu()) })
	return found
}

func (tt *testTray) waitMenu(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := tt.menu(t)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("menu:\n%s\nwant:\n%s", got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

const enforcingMenu = `Tollgate: enforcing (off)
---
Pending (0) (off)
Rules…
Connections…
Mode
  Enforcing [x] (off)
  Monitor (log only)
  Disabled
---
Quit
`

func TestMenuItemsAndModeSubmenu(t *testing.T) {
	fake := newFakeSession("s1", ":1.5")
	tt := newTestTray(t, fake, WindowNever)
	tt.waitMenu(t, enforcingMenu)

	// Mode ▸ Monitor calls SetMode; the daemon's StatusChanged moves the
	// check mark (GetStatus is asked again).
	tt.onUI(tt.item("Monitor (log only)").Action)
	waitFor(t, "SetMode(monitor)", func() bool { return len(fake.setModes()) == 1 })
	if got := fake.setModes(); got[0] != "monitor" {
		t.Fatalf("SetMode calls %v", got)
	}
	fake.emit(dbus.Signal{Name: dbus.SignalStatusChanged})
	tt.waitMenu(t, `Tollgate: monitor (off)
---
Pending (0) (off)
Rules…
Connections…
Mode
  Enforcing
  Monitor (log only) [x] (off)
  Disabled
---
Quit
`)
	if n := tt.notifications(); len(n) != 0 {
		t.Errorf("notifications after a mode change that worked: %v", n)
	}

	// Refused: said in a notification, the tray goes on.
	fake.mu.Lock()
	fake.modeErr = wrapNotAuthorized()
	fake.mu.Unlock()
	tt.onUI(tt.item("Disabled").Action)
	waitFor(t, "a notification about the refusal", func() bool { return len(tt.notifications()) == 1 })
	if n := tt.notifications()[0]; !strings.Contains(n, "not authorized") || !strings.Contains(n, "disabled") {
		t.Errorf("notification %q", n)
	}
	if got := fake.setModes(); len(got) != 2 || got[1] != "disabled" {
		t.Errorf("SetMode calls %v", got)
	}

	// The daemon leaves: unreachable, no mode to choose.
	fake.emit(dbus.Signal{Name: dbus.SignalDaemonChanged})
	tt.waitMenu(t, `Tollgate: daemon unreachable (off)
---
Pending (0) (off)
Rules…
Connections…
Mode
  Enforcing (off)
  Monitor (log only) (off)
  Disabled (off)
---
Quit
`)
	if s := tt.State(); s.Icon() != IconUnreachable || s.Problem != "tollgated is not running" {
		t.Errorf("state %+v", s)
	}
	// ... and comes back.
	fake.emit(dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.8"})
	waitFor(t, "reachable again", func() bool { return tt.State().Reachable })
}

// wrapNotAuthorized is the error the real client returns when polkit says
// no.
func wrapNotAuthorized() error {
	err := dbus.FromDBusError(fakeDBusError(dbus.ErrorNotAuthorized, "not authorized: changing the mode needs org.tollgate.manage"))
	if !errors.Is(err, dbus.ErrNotAuthorized) {
		panic("FromDBusError lost the kind")
	}
	return fmt.Errorf("SetMode: %w", err)
}

func TestMenuOpensWindows(t *testing.T) {
	fake := newFakeSession("s1", ":1.5")
	tt := newTestTray(t, fake, WindowNever)
	tt.waitMenu(t, enforcingMenu)
	tt.onUI(tt.item("Rules…").Action)
	tt.onUI(tt.item("Connections…").Action)
	titles := map[string]bool{}
	tt.onUI(func() {
		for _, w := range tt.fa.Driver().AllWindows() {
			titles[w.Title()] = true
		}
	})
	for _, want := range []string{"Tollgate — Rules", "Tollgate — Connections"} {
		if !titles[want] {
			t.Errorf("no window %q after the menu item; windows: %v", want, titles)
		}
	}
	if titles[StatusWindowTitle] {
		t.Errorf("status window shown with -status-window=never")
	}
}

func TestStatusWindowWithoutTrayHost(t *testing.T) {
	fake := newFakeSession("s1", ":1.5")
	fake.status.Mode = "monitor"
	tt := newTestTray(t, fake, WindowAuto) // the test app has no system tray
	waitFor(t, "reachable", func() bool { return tt.State().Reachable })
	var win fyne.Window
	tt.onUI(func() {
		for _, w := range tt.fa.Driver().AllWindows() {
			if w.Title() == StatusWindowTitle {
				win = w
			}
		}
	})
	if win == nil {
		t.Fatal("no status window without a tray host")
	}
	var radio *widget.RadioGroup
	var got string
	// The state is set before the window shows it: wait for the window.
	waitFor(t, "the status window showing the mode", func() bool {
		var labels []string
		tt.onUI(func() {
			walk(win.Content(), func(o fyne.CanvasObject) {
				switch w := o.(type) {
				case *widget.Label:
					labels = append(labels, w.Text)
				case *widget.Button:
					labels = append(labels, "["+w.Text+"]")
				case *widget.RadioGroup:
					radio = w
				}
			})
		})
		got = strings.Join(labels, "|")
		return strings.Contains(got, "Tollgate: monitor")
	})
	for _, want := range []string{"Tollgate: monitor", "[Pending (0)]", "[Rules…]", "[Connections…]", "[Quit]"} {
		if !strings.Contains(got, want) {
			t.Errorf("status window lacks %q: %s", want, got)
		}
	}
	if radio == nil {
		t.Fatal("no mode choice in the status window")
	}
	tt.onUI(func() {
		if radio.Selected != "Monitor (log only)" {
			t.Errorf("mode shown %q", radio.Selected)
		}
		radio.SetSelected("Disabled") // as a tap on the choice does
	})
	waitFor(t, "SetMode(disabled) from the status window", func() bool {
		m := fake.setModes()
		return len(m) == 1 && m[0] == "disabled"
	})
}

// walk visits o and everything in its containers (the status window's
// widgets sit directly in containers).
func walk(o fyne.CanvasObject, f func(fyne.CanvasObject)) {
	f(o)
	if c, ok := o.(*fyne.Container); ok {
		for _, x := range c.Objects {
			walk(x, f)
		}
	}
}

func TestNotificationOfConnectionsBlockedUnasked(t *testing.T) {
	fake := newFakeSession("s1", ":1.5")
	now := time.Now()
	fake.log = []shared.LogEntry{
		unasked(1, 1000, "/usr/bin/curl", now.Add(-time.Minute), shared.ActionDeny),
		unasked(2, 1000, "/usr/bin/curl", now.Add(-50*time.Second), shared.ActionReject),
		unasked(3, 1000, "/usr/bin/curl", now.Add(-40*time.Second), shared.ActionAllow),
		unasked(4, 1001, "/usr/bin/wget", now.Add(-40*time.Second), shared.ActionDeny),
	}
	tt := newTestTray(t, fake, WindowNever)
	waitFor(t, "the notification", func() bool { return len(tt.notifications()) > 0 })
	if got, want := tt.notifications()[0], "Tollgate blocked connections: 2 connections of curl were blocked while Tollgate could not ask you"; got != want {
		t.Errorf("notification %q, want %q", got, want)
	}
	fake.mu.Lock()
	f := fake.filters[0]
	fake.mu.Unlock()
	if f.UID == nil || *f.UID != 1000 {
		t.Errorf("log read with filter %+v, want the user's own uid", f)
	}
}

func TestNewRefusesRoot(t *testing.T) {
	if _, err := New(test.NewTempApp(t), Options{UID: 0}); !errors.Is(err, ErrRoot) {
		t.Fatalf("New as uid 0: %v, want ErrRoot", err)
	}
	if err := CheckUser(1000, 0); !errors.Is(err, ErrRoot) {
		t.Fatalf("CheckUser with euid 0: %v", err)
	}
	if err := CheckUser(1000, 1000); err != nil {
		t.Fatalf("CheckUser(1000): %v", err)
	}
	if _, err := New(test.NewTempApp(t), Options{UID: 1000, StatusWindow: "sometimes"}); err == nil {
		t.Fatal("New took a bad status window mode")
	}
}

func TestModeError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{wrapNotAuthorized(), "not authorized"},
		{ErrNoBus, "not connected to the system bus"},
		{fmt.Errorf("SetMode: %w", dbus.FromDBusError(fakeDBusError("org.freedesktop.DBus.Error.ServiceUnknown", "no"))), "tollgated is not running"},
		{context.DeadlineExceeded, "does not answer"},
	}
	for _, tt := range tests {
		if got := ModeError("monitor", tt.err); !strings.Contains(got, tt.want) || !strings.Contains(got, "monitor") {
			t.Errorf("ModeError(%v) = %q, want it to say %q", tt.err, got, tt.want)
		}
	}
}

// TestPromptKnowsTheDefaultAction: the daemon's default action (GetStatus)
// reaches the prompt, whose countdown names it, and follows StatusChanged.
func TestPromptKnowsTheDefaultAction(t *testing.T) {
	fake := newFakeSession("s1", ":1.5")
	fake.status.DefaultAction = shared.ActionReject
	tt := newTestTray(t, fake, WindowNever)
	waitFor(t, "the prompt told reject", func() bool { return tt.prompt.DaemonDefault() == shared.ActionReject })
	fake.mu.Lock()
	fake.status.DefaultAction = shared.ActionAllow
	fake.mu.Unlock()
	fake.emit(dbus.Signal{Name: dbus.SignalStatusChanged})
	waitFor(t, "the prompt told allow", func() bool { return tt.prompt.DaemonDefault() == shared.ActionAllow })
}

// TestPendingIconShowsTheCount: the pending icon carries the number
// waiting (its own picture per count, made once), other states their own.
func TestPendingIconShowsTheCount(t *testing.T) {
	tt := newTestTray(t, newFakeSession("s1", ":1.5"), WindowNever)
	tt.onUI(func() {
		st := func(n int) State {
			return State{Reachable: true, Status: shared.Status{Mode: ModeEnforcing}, Waiting: n}
		}
		three, four, many := tt.icon(st(3)), tt.icon(st(4)), tt.icon(st(12))
		if tt.icon(st(3)) != three || tt.icon(st(15)) != many {
			t.Error("icon made again for the same count")
		}
		names := map[string]bool{three.Name(): true, four.Name(): true, many.Name(): true}
		if len(names) != 3 || bytes.Equal(three.Content(), four.Content()) || bytes.Equal(four.Content(), many.Content()) {
			t.Errorf("counts share a picture: %v", names)
		}
		for _, r := range []fyne.Resource{three, four, many} {
			if _, err := png.Decode(bytes.NewReader(r.Content())); err != nil {
				t.Errorf("%s: %v", r.Name(), err)
			}
			if bytes.Equal(r.Content(), assets.StatusIcon(assets.StatusPending)) {
				t.Errorf("%s: the bare pending icon", r.Name())
			}
		}
		if e := tt.icon(st(0)); !bytes.Equal(e.Content(), assets.StatusIcon(assets.StatusEnforcing)) {
			t.Errorf("nothing waiting: %s", e.Name())
		}
	})
}

// fakeTrayHost is a driver's system tray (the test app has none).
type fakeTrayHost struct{ icon fyne.Resource }

func (f *fakeTrayHost) SetSystemTrayMenu(*fyne.Menu)      {}
func (f *fakeTrayHost) SetSystemTrayIcon(r fyne.Resource) { f.icon = r }
func (f *fakeTrayHost) SetSystemTrayWindow(fyne.Window)   {}

// TestStatusWindowFollowsTrayHost: with the window on auto, the status
// window shows when the tray host leaves the session bus and hides when
// one comes back.
func TestStatusWindowFollowsTrayHost(t *testing.T) {
	var host atomic.Bool
	host.Store(true)
	tray := &fakeTrayHost{}
	tt := newTestTrayWith(t, newFakeSession("s1", ":1.5"), Options{StatusWindow: WindowAuto,
		TrayHost: func(context.Context) bool { return host.Load() }, TrayHostEvery: time.Millisecond},
		func(a *App) { a.tray = tray })
	shown := func() bool {
		var s bool
		tt.onUI(func() { s = tt.winShown })
		return s
	}
	if shown() {
		t.Fatal("status window shown with a tray host there")
	}
	host.Store(false)
	waitFor(t, "the status window after the host left", shown)
	host.Store(true)
	waitFor(t, "the status window hidden when a host came", func() bool { return !shown() })
	host.Store(false)
	waitFor(t, "the status window again", shown)
	tt.onUI(func() {
		if tray.icon == nil {
			t.Error("no icon given to the tray")
		}
	})
}
