package tray

import (
	"context"
	"fmt"
	"image/color"
	"log/slog"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	fdesktop "fyne.io/fyne/v2/driver/desktop"

	"github.com/tollgate-fw/tollgate/assets"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
	"github.com/tollgate-fw/tollgate/ui/tray/badge"
	"github.com/tollgate-fw/tollgate/ui/tray/connections"
	"github.com/tollgate-fw/tollgate/ui/tray/prompt"
	"github.com/tollgate-fw/tollgate/ui/tray/rules"
	"github.com/tollgate-fw/tollgate/ui/tray/winwork"
)

// AppFinder names applications and finds their icons (*desktop.Index).
type AppFinder = desktop.Finder

// WindowMode says when the status window (the tray's stand-in) is shown.
type WindowMode string

const (
	WindowAuto   WindowMode = "auto"   // while no tray host is on the session bus (looked for at start, then every Options.TrayHostEvery)
	WindowAlways WindowMode = "always" // always, beside the icon
	WindowNever  WindowMode = "never"  // never (prompts and windows still appear when needed)
)

// Options configure the tray. Zero values take the defaults.
type Options struct {
	UID  uint32 // the desktop user (never 0)
	Dial Dialer // nil: DialBus("") (the system bus)

	// Prompt defaults (see prompt.Options): preselected action,
	// lifetime, scope, and the arming delay.
	Action   shared.Action
	Lifetime shared.Lifetime
	Scope    shared.AnswerScope
	ArmDelay time.Duration

	Apps         AppFinder  // optional: application names and icons
	StatusWindow WindowMode // "" = WindowAuto
	Log          *slog.Logger
	// TrayHost, when set, replaces the look for a tray host on the session
	// bus (tests).
	TrayHost func(context.Context) bool
	// TrayHostEvery is how often WindowAuto looks for a tray host again:
	// the status window shows when the host leaves and hides when one
	// appears. 0 = 10 s.
	TrayHostEvery time.Duration
}

// App is the running tray: the bus, the watcher, the prompt, the windows,
// the icon and the menu.
type App struct {
	fa  fyne.App
	o   Options
	log *slog.Logger
	bus *Bus

	prompt *prompt.Prompt
	rules  *rules.Window
	conns  *connections.Window
	tray   fdesktop.App // nil without tray support in the driver

	// notify shows a notification (the app's SendNotification); ui runs a
	// function on Fyne's goroutine (fyne.Do). Tests replace both.
	notify func(*fyne.Notification)
	ui     func(func())

	mu    sync.Mutex
	state State

	// Fyne's goroutine only.
	menu      *fyne.Menu
	statusItm *fyne.MenuItem
	pendItm   *fyne.MenuItem
	modeItms  map[string]*fyne.MenuItem
	win       *statusWindow
	winShown  bool
	icons     map[string]fyne.Resource // by iconName
	shownIcon string
	badges    *badge.Icons // the pending icon with the number waiting

	cancel  context.CancelFunc
	workers sync.WaitGroup
	quitOne sync.Once
}

// New builds the tray on a (the Fyne app): windows are made, nothing is
// shown or connected before Start. Call it on Fyne's goroutine (before
// a.Run()). It refuses uid 0.
func New(a fyne.App, o Options) (*App, error) {
	if o.UID == 0 {
		return nil, ErrRoot
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Dial == nil {
		o.Dial = DialBus("")
	}
	if o.StatusWindow == "" {
		o.StatusWindow = WindowAuto
	}
	switch o.StatusWindow {
	case WindowAuto, WindowAlways, WindowNever:
	default:
		return nil, fmt.Errorf("status window %q: want auto, always or never", o.StatusWindow)
	}
	if o.TrayHost == nil {
		o.TrayHost = TrayHostPresent
	}
	t := &App{fa: a, o: o, log: o.Log, notify: a.SendNotification, ui: fyne.Do, icons: map[string]fyne.Resource{}}
	t.badges = badge.NewIcons(assets.StatusIcon(assets.StatusPending),
		badge.Circle{CenterX: assets.PendingBadge.CenterX, CenterY: assets.PendingBadge.CenterY, Radius: assets.PendingBadge.InnerRadius},
		color.RGBA{R: assets.BadgeText >> 16 & 0xff, G: assets.BadgeText >> 8 & 0xff, B: assets.BadgeText & 0xff, A: 0xff})
	t.bus = NewBus(o.Dial, o.Log.With("part", "bus"))
	a.SetIcon(fyne.NewStaticResource("tollgate.png", assets.AppIcon()))

	// Typed nils must not reach the windows as non-nil interfaces.
	var pa prompt.AppFinder
	var ra rules.AppFinder
	var ca connections.AppFinder
	if o.Apps != nil {
		pa, ra, ca = o.Apps, o.Apps, o.Apps
	}
	// Every part updates its widgets through t.ui (looked up at each
	// call: tests replace it after New).
	ui := func(f func()) { t.ui(f) }
	t.prompt = prompt.New(a, t.bus, prompt.Options{
		Action: o.Action, Lifetime: o.Lifetime, Scope: o.Scope, ArmDelay: o.ArmDelay,
		Apps: pa, OnChange: t.setWaiting, Log: o.Log.With("part", "prompt"), UI: ui,
	})
	t.rules = rules.NewWindow(a, t.bus, rules.Options{Apps: ra, UID: o.UID, Log: o.Log.With("part", "rules"), UI: ui})
	t.conns = connections.NewWindow(a, t.bus, connections.Options{Apps: ca, MakeRule: t.rules.NewRule, Log: o.Log.With("part", "connections"), UI: ui})
	t.buildMenu()
	if d, ok := a.(fdesktop.App); ok {
		t.tray = d
	}
	return t, nil
}

// Menu is the tray menu (the status window offers the same entries).
func (t *App) Menu() *fyne.Menu { return t.menu }

// State is what the tray shows now.
func (t *App) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// Start connects to the bus and starts the prompt's agent and the
// watcher; it shows the icon (when the driver has a tray) and the status
// window (by Options.StatusWindow). Call it on Fyne's goroutine; it returns
// at once. Quit (or ctx ending) stops everything.
func (t *App) Start(ctx context.Context) {
	ctx, t.cancel = context.WithCancel(ctx)
	t.workers.Go(func() { t.bus.Run(ctx) })
	t.workers.Go(func() { t.runPrompt(ctx) })
	w := &Watcher{
		Client:  t.bus,
		Blocked: NewBlocked(t.o.UID, time.Now, t.appName),
		OnReach: t.setReach,
		OnNotice: func(n Notice) {
			t.ui(func() { t.notify(fyne.NewNotification(n.Title, n.Body)) })
		},
		Log: t.log.With("part", "watcher"),
	}
	t.workers.Go(func() { w.Run(ctx) })

	if t.tray != nil {
		t.tray.SetSystemTrayMenu(t.menu)
	}
	t.apply()
	show := t.o.StatusWindow == WindowAlways || t.tray == nil && t.o.StatusWindow == WindowAuto
	if t.o.StatusWindow == WindowAuto && t.tray != nil {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		show = !t.o.TrayHost(hctx)
		cancel()
		if show {
			t.log.Info("no tray host on the session bus: showing the status window")
		}
	}
	if show {
		t.showStatusWindow()
	}
	if t.o.StatusWindow == WindowAuto && t.tray != nil {
		hostThere := !show
		t.workers.Go(func() { t.followTrayHost(ctx, hostThere) })
	}
}

// followTrayHost looks for a tray host every Options.TrayHostEvery and
// shows the status window when the host has gone, hides it when one has
// come (a panel restarted, an extension turned on later).
func (t *App) followTrayHost(ctx context.Context, there bool) {
	every := t.o.TrayHostEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		now := t.o.TrayHost(hctx)
		cancel()
		if now == there || ctx.Err() != nil {
			continue
		}
		there = now
		if there {
			t.log.Info("a tray host appeared on the session bus: hiding the status window")
			t.ui(t.hideStatusWindow)
		} else {
			t.log.Info("the tray host left the session bus: showing the status window")
			t.ui(t.showStatusWindow)
		}
	}
}

// Run starts the tray and runs the Fyne app until Quit or ctx ends. Call
// it on the main goroutine.
func (t *App) Run(ctx context.Context) {
	t.Start(ctx)
	stop := context.AfterFunc(ctx, t.Quit)
	defer stop()
	t.fa.Run()
	t.Stop()
}

// Quit stops the workers (the agent unregisters) and then the Fyne app.
// Safe from any goroutine.
func (t *App) Quit() {
	t.quitOne.Do(func() {
		go func() {
			t.Stop()
			fyne.Do(t.fa.Quit)
		}()
	})
}

// Stop ends the workers and waits (at most 5 s) for them: the agent
// unregisters, the bus connection closes. It does not end the Fyne app.
func (t *App) Stop() {
	if t.cancel == nil {
		return
	}
	t.cancel()
	done := make(chan struct{})
	go func() { t.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.log.Warn("tray workers did not stop within 5s")
	}
}

// runPrompt runs the prompt's agent loop, again after an error (it
// survives the daemon and, through Bus, the bus going away; an error is
// a subscription failing).
func (t *App) runPrompt(ctx context.Context) {
	wait := time.Second
	for {
		err := t.prompt.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		t.log.Warn("prompt agent stopped; starting it again", "err", err, "in", wait)
		if !winwork.Sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (t *App) appName(c shared.Connection) string {
	if name, ok := desktop.NameOf(t.o.Apps, c.Exe, c.App); ok {
		return name
	}
	return ExeName(c)
}

func (t *App) setReach(r Reach) {
	if r.Reachable {
		// The prompt's countdown names what the daemon does unanswered.
		t.prompt.SetDaemonDefault(r.Status.DefaultAction)
	}
	t.mu.Lock()
	t.state.Reachable, t.state.Status, t.state.Problem = r.Reachable, r.Status, r.Problem
	t.mu.Unlock()
	t.ui(t.apply)
}

func (t *App) setWaiting(n int) {
	t.mu.Lock()
	t.state.Waiting = n
	t.mu.Unlock()
	t.ui(t.apply)
}

func (t *App) buildMenu() {
	t.statusItm = fyne.NewMenuItem("", nil)
	t.statusItm.Disabled = true
	t.pendItm = fyne.NewMenuItem("", t.prompt.Show)
	mode := fyne.NewMenu("Mode")
	t.modeItms = map[string]*fyne.MenuItem{}
	for _, it := range (State{}).ModeItems() {
		m := it.Mode
		item := fyne.NewMenuItem(it.Label, func() { t.SetMode(m) })
		t.modeItms[m] = item
		mode.Items = append(mode.Items, item)
	}
	modeItem := fyne.NewMenuItem("Mode", nil)
	modeItem.ChildMenu = mode
	quit := fyne.NewMenuItem("Quit", t.Quit)
	quit.IsQuit = true
	t.menu = fyne.NewMenu("Tollgate",
		t.statusItm,
		fyne.NewMenuItemSeparator(),
		t.pendItm,
		fyne.NewMenuItem("Rules…", t.ShowRules),
		fyne.NewMenuItem("Connections…", t.ShowConnections),
		modeItem,
		fyne.NewMenuItemSeparator(),
		quit,
	)
	t.applyMenu(State{})
}

// ShowRules opens the rules window. Fyne's goroutine.
func (t *App) ShowRules() { t.rules.Show() }

// ShowConnections opens the connections window. Fyne's goroutine.
func (t *App) ShowConnections() { t.conns.Show() }

// SetMode asks the daemon to switch to mode (the daemon asks polkit); a
// refusal is shown (notification, and a dialog on the status window),
// never fatal. Safe from any goroutine; it returns at once.
func (t *App) SetMode(mode string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // polkit may ask for a password
		defer cancel()
		err := t.bus.SetMode(ctx, mode)
		if err == nil {
			t.log.Info("mode changed", "mode", mode)
			return
		}
		t.log.Warn("set mode", "mode", mode, "err", err)
		msg := ModeError(mode, err)
		t.ui(func() {
			t.notify(fyne.NewNotification("Tollgate: mode not changed", msg))
			if t.win != nil {
				t.win.showError(msg)
			}
		})
	}()
}

// apply shows the current state. Fyne's goroutine.
func (t *App) apply() {
	s := t.State()
	t.applyMenu(s)
	if t.tray != nil && t.menu != nil {
		if name := t.iconName(s); name != t.shownIcon {
			t.tray.SetSystemTrayIcon(t.icon(s))
			t.shownIcon = name
		}
		t.tray.SetSystemTrayMenu(t.menu)
	}
	if t.win != nil {
		t.win.update(s, t.icon(s))
	}
}

func (t *App) applyMenu(s State) {
	t.statusItm.Label = s.StatusLine()
	t.pendItm.Label = s.PendingLabel()
	t.pendItm.Disabled = !s.PendingEnabled()
	for _, it := range s.ModeItems() {
		mi := t.modeItms[it.Mode]
		mi.Label, mi.Checked, mi.Disabled = it.Label, it.Checked, !it.Enabled
	}
}

var assetStatus = map[Icon]assets.Status{
	IconEnforcing:   assets.StatusEnforcing,
	IconMonitor:     assets.StatusMonitor,
	IconDisabled:    assets.StatusDisabled,
	IconUnreachable: assets.StatusUnreachable,
	IconPending:     assets.StatusPending,
}

// iconName names the icon for s: its Icon, with the badge's text when
// prompts wait ("pending-3", "pending-9+").
func (t *App) iconName(s State) string {
	if ic := s.Icon(); ic != IconPending {
		return string(ic)
	}
	return string(IconPending) + "-" + badge.Text(s.Waiting)
}

// icon is the picture for s (Fyne's goroutine): the status's, with the
// number waiting on the pending icon's badge.
func (t *App) icon(s State) fyne.Resource {
	name := t.iconName(s)
	if r, ok := t.icons[name]; ok {
		return r
	}
	ic := s.Icon()
	data := assets.StatusIcon(assetStatus[ic])
	if ic == IconPending {
		b, _, err := t.badges.For(s.Waiting)
		if err != nil {
			t.log.Warn("pending icon without its number", "waiting", s.Waiting, "err", err)
		} else {
			data = b
		}
	}
	r := fyne.NewStaticResource("tollgate-"+name+".png", data)
	t.icons[name] = r
	return r
}

func (t *App) showStatusWindow() {
	if t.win == nil {
		t.win = newStatusWindow(t)
	}
	s := t.State()
	t.win.update(s, t.icon(s))
	t.win.w.Show()
	t.winShown = true
}

// hideStatusWindow hides the status window, if shown. Fyne's goroutine.
func (t *App) hideStatusWindow() {
	if t.win != nil {
		t.win.w.Hide()
	}
	t.winShown = false
}
