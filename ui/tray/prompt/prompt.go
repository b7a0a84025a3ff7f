// Package prompt is the tray's prompt window: it runs the user's agent
// session (package agent) and shows the pending connections one at a time
// in one window, always on top where the window manager allows it, with
// the facts worth knowing (application and icon, executable, command line,
// pid, user, remote names and address, port, protocol, direction, attempts;
// parent, sha256, cgroup/unit and attribution under "Details"), the choices
// (Allow / Deny, a lifetime, a scope), a visible countdown to the default
// action and keys (A allow, D deny, Enter confirms, Esc deny once). After a
// prompt appears keys and clicks are ignored for an arming delay, so typing
// into another window never answers it.
//
// The logic of what is shown and answered is in the view-model
// (promptmodel); this package holds the Fyne widgets and the loop that ties
// the session to them. Widgets are touched only on Fyne's goroutine (fyne.Do).
// It talks to the daemon only through agent.Client and must not import the
// daemon.
package prompt

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"log/slog"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	fdesktop "fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/agent"
	"github.com/tollgate-fw/tollgate/ui/desktop"
	"github.com/tollgate-fw/tollgate/ui/tray/prompt/promptmodel"
)

// Title is the prompt window's title.
const Title = "Tollgate — connection request"

// AppFinder names applications and finds their icons (*desktop.Index).
type AppFinder = desktop.Finder

// Options configure the prompt. Zero values take the defaults.
type Options struct {
	// Action is the preselected action, the one Enter answers: deny unless
	// set (Enter alone never lets a connection through; allowing takes the
	// Allow button or A then Enter).
	Action   shared.Action
	Lifetime shared.Lifetime    // preselected lifetime; default once
	Scope    shared.AnswerScope // preselected scope; default exe-host-port
	ArmDelay time.Duration      // keys and clicks ignored after a prompt appears; 0 = 1s, < 0 = none
	// DaemonDefault is the daemon's default action (GetStatus's
	// DefaultAction), named by the countdown ("Denied in 42 s unless you
	// answer"); "" until known. SetDaemonDefault changes it later.
	DaemonDefault shared.Action
	Apps          AppFinder         // optional: application names and icons
	OnChange      func(waiting int) // called (from Run's goroutine) whenever the number of waiting groups changes
	Log           *slog.Logger
	Now           func() time.Time // the clock; nil = time.Now (tests set it)
	// UI runs a function on Fyne's goroutine; nil = fyne.Do. The tray
	// passes its own, so its tests serialize every widget update.
	UI func(func())
}

// Width is the prompt window's width: long values wrap or are shortened
// within it, so the window's height stays within a laptop's screen.
const Width = 680

// Prompt is the prompt window and its agent loop.
type Prompt struct {
	app     fyne.App
	c       agent.Client
	o       Options
	log     *slog.Logger
	now     func() time.Time
	ui      func(func()) // runs f on Fyne's goroutine: fyne.Do
	answers chan shared.Answer
	waiting atomic.Int64
	dflt    atomic.Value // shared.Action: the daemon's default action, as last set

	// Fyne's goroutine only, from here on.
	m        *promptmodel.Model
	w        fyne.Window
	visible  bool
	app0     desktop.App // the shown connection's application
	appFound bool

	icon      *canvas.Image
	headline  *widget.Label
	more      *widget.Label
	facts     *fyne.Container          // the fact lines, details included when on
	factsBox  *container.ThemeOverride // facts, a little tighter than the theme's
	detailsOn *widget.Check
	lifetime  *keySelect
	scope     *keySelect
	countdown *widget.Label
	arming    *widget.Label
	enter     *widget.Label
	message   *widget.Label
	allow     *widget.Button
	deny      *widget.Button
	// allowMark and denyMark outline the button Enter answers with.
	allowMark, denyMark *canvas.Rectangle
	syncing             bool // choices being set from the model: not the user's
}

// New makes the prompt and its (hidden) window. Call it on Fyne's goroutine
// (before the app runs, or from a callback); Run starts the agent.
func New(a fyne.App, c agent.Client, o Options) *Prompt {
	p := &Prompt{app: a, c: c, o: o, log: o.Log, now: o.Now, ui: fyne.Do, answers: make(chan shared.Answer, 1)}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if o.UI != nil {
		p.ui = o.UI
	}
	p.m = promptmodel.New(promptmodel.Options{Action: o.Action, Lifetime: o.Lifetime, Scope: o.Scope, ArmDelay: o.ArmDelay})
	p.m.SetDaemonDefault(o.DaemonDefault)
	p.dflt.Store(p.m.DaemonDefault())
	p.build()
	return p
}

func (p *Prompt) build() {
	p.w = p.app.NewWindow(Title)
	if dw, ok := p.w.(fdesktop.Window); ok {
		// Fyne 2.8 asks the window manager to keep it above others (a
		// floating window); a window manager may still refuse.
		dw.RequestAlwaysOnTop()
	}
	p.w.SetCloseIntercept(p.hide) // closing hides: the countdown goes on
	p.icon = canvas.NewImageFromResource(theme.ComputerIcon())
	p.icon.FillMode = canvas.ImageFillContain
	p.icon.SetMinSize(fyne.NewSquareSize(48))
	p.headline = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	p.headline.SizeName = theme.SizeNameSubHeadingText
	p.headline.Wrapping = fyne.TextWrapWord
	p.more = widget.NewLabel("")
	p.more.Importance = widget.HighImportance // "3 more": worth seeing, not a button
	p.facts = container.New(layout.NewFormLayout())
	p.factsBox = container.NewThemeOverride(p.facts, compactTheme{p.app})
	p.detailsOn = widget.NewCheck("Details", func(bool) {
		p.m.ToggleDetails()
		p.w.Canvas().Unfocus() // keys go to the prompt, not the check box
		p.render()
	})
	// A choice the user made (not one render synced) goes to the model;
	// keys then go to the prompt, not the select.
	chosen := func(set func(string)) func(string) {
		return func(s string) {
			if p.syncing {
				return
			}
			set(s)
			p.w.Canvas().Unfocus()
			p.render()
		}
	}
	p.lifetime = newKeySelect(nil, chosen(func(s string) {
		if l, ok := promptmodel.ValueOf(promptmodel.Lifetimes, s); ok {
			p.m.SetLifetime(l)
		}
	}), p.typedRune, p.typedKey)
	p.scope = newKeySelect(labels(promptmodel.Scopes), chosen(func(s string) {
		if sc, ok := promptmodel.ValueOf(promptmodel.Scopes, s); ok {
			p.m.SetScope(sc)
		}
	}), p.typedRune, p.typedKey)
	p.countdown = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	p.arming = widget.NewLabel("")
	p.enter = widget.NewLabelWithStyle("", fyne.TextAlignTrailing, fyne.TextStyle{Bold: true})
	p.message = widget.NewLabel("")
	p.message.Importance = widget.DangerImportance
	p.message.Wrapping = fyne.TextWrapWord
	p.message.Hide()
	// Exactly one HighImportance button in the window: Allow (the
	// end-to-end test finds it on a screenshot by its colour).
	p.allow = widget.NewButtonWithIcon("Allow", theme.ConfirmIcon(), func() { p.click(shared.ActionAllow) })
	p.allow.Importance = widget.HighImportance
	p.deny = widget.NewButtonWithIcon("Deny", theme.CancelIcon(), func() { p.click(shared.ActionDeny) })
	p.deny.Importance = widget.DangerImportance
	var allowBox, denyBox fyne.CanvasObject
	p.allowMark, allowBox = marked(p.allow)
	p.denyMark, denyBox = marked(p.deny)

	top := container.NewBorder(nil, nil, container.NewCenter(p.icon), container.NewVBox(p.more), p.headline)
	// The two choices side by side, each half of the width.
	choice := func(label string, s *keySelect) fyne.CanvasObject {
		return container.NewBorder(nil, nil, widget.NewLabelWithStyle(label, fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), nil, s)
	}
	choices := container.NewGridWithColumns(2, choice("For", p.lifetime), choice("Scope", p.scope))
	// Readable, not greyed: the keys are half of how a prompt is
	// answered.
	keys := widget.NewLabel("A allow · D deny · Enter confirms · Esc deny once")
	p.w.SetContent(container.NewVBox(
		top,
		p.factsBox,
		widget.NewSeparator(),
		choices,
		container.NewBorder(nil, nil, p.countdown, p.arming),
		p.message,
		container.NewBorder(nil, nil, keys, nil, p.enter),
		container.NewHBox(container.NewCenter(p.detailsOn), layout.NewSpacer(), denyBox, allowBox),
	))
	p.w.Resize(fyne.NewSize(Width, 0))
	p.w.Canvas().SetOnTypedRune(p.typedRune)
	p.w.Canvas().SetOnTypedKey(func(ev *fyne.KeyEvent) { p.typedKey(ev) })
}

// typedRune and typedKey are the prompt's keys, from the canvas or from
// a focused choice (a Select keeps the focus after its menu closes; keys
// must still answer).
func (p *Prompt) typedRune(r rune) {
	switch r {
	case 'a', 'A':
		p.key(promptmodel.KeyAllow)
	case 'd', 'D':
		p.key(promptmodel.KeyDeny)
	}
}

func (p *Prompt) typedKey(ev *fyne.KeyEvent) bool {
	switch ev.Name {
	case fyne.KeyReturn, fyne.KeyEnter:
		p.key(promptmodel.KeyEnter)
	case fyne.KeyEscape:
		p.key(promptmodel.KeyEscape)
	default:
		return false
	}
	return true
}

// marked puts a button in a frame whose outline shows when the button is
// the one Enter answers with (the outline's colour set by render).
func marked(b *widget.Button) (*canvas.Rectangle, fyne.CanvasObject) {
	r := canvas.NewRectangle(color.Transparent)
	r.StrokeWidth = 2
	r.CornerRadius = theme.InputRadiusSize() + 2
	return r, container.NewStack(r, container.NewPadded(b))
}

func labels[T comparable](cs []promptmodel.Choice[T]) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Label
	}
	return out
}

// Window is the prompt window (for the tray shell and tests).
func (p *Prompt) Window() fyne.Window { return p.w }

// Waiting is the number of pending groups waiting for an answer.
func (p *Prompt) Waiting() int { return int(p.waiting.Load()) }

// SetDaemonDefault tells the prompt the daemon's default action (from
// GetStatus), which the countdown names. Safe from any goroutine.
func (p *Prompt) SetDaemonDefault(a shared.Action) {
	switch a {
	case shared.ActionAllow, shared.ActionDeny, shared.ActionReject:
	default:
		a = "" // not known
	}
	if p.dflt.Swap(a) == a {
		return
	}
	p.ui(func() {
		if p.m.DaemonDefault() == a {
			return
		}
		p.m.SetDaemonDefault(a)
		p.renderTime()
	})
}

// DaemonDefault is the daemon's default action the countdown names, as
// last set ("" when not known). Safe from any goroutine.
func (p *Prompt) DaemonDefault() shared.Action {
	a, _ := p.dflt.Load().(shared.Action)
	return a
}

// Show brings the prompt window to the front when something waits (the
// tray menu's "Pending (N)"). Safe from any goroutine.
func (p *Prompt) Show() {
	p.ui(func() {
		if p.m.Waiting() == 0 {
			return
		}
		p.w.Show()
		p.w.RequestFocus()
		p.visible = true
	})
}

// Run is the agent loop: it registers as the user's agent (waiting for the
// daemon when it is not on the bus), shows the window while groups wait and
// hides it when none do, follows the daemon leaving and returning, and
// sends the answers given in the window. It returns nil when ctx ends, and
// an error when the session cannot go on: the subscription to the daemon's
// signals failing, or the bus connection being lost (errors.Is(err,
// agent.ErrBusLost)); the tray shell then reconnects and runs a new Prompt.
func (p *Prompt) Run(ctx context.Context) error {
	s := agent.New(p.c, agent.Options{Wait: true, Log: p.log})
	ev, err := s.Start(ctx)
	if err != nil {
		return fmt.Errorf("tray prompt: %w", err)
	}
	defer s.Close()
	defer p.publish(nil, agent.Event{})
	p.event(ev)
	p.publish(s.Queue(), ev)
	tick := time.NewTicker(250 * time.Millisecond) // countdown and arming
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case in := <-s.Inputs():
			ev, err := s.Handle(ctx, in)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("tray prompt: %w", err)
			}
			p.event(ev)
			if ev.Kind != agent.EventNone {
				p.publish(s.Queue(), ev)
			}
		case a := <-p.answers:
			err := s.Answer(ctx, a)
			if err != nil {
				p.log.Info("answer", "id", a.PendingID, "err", err)
			}
			p.publish(s.Queue(), agent.Event{})
			trouble := troubleText(err)
			p.ui(func() {
				p.m.Answered(trouble)
				p.render()
			})
		case <-tick.C:
			if p.Waiting() > 0 {
				p.ui(p.renderTime)
			}
		}
	}
}

func (p *Prompt) event(ev agent.Event) {
	switch ev.Kind {
	case agent.EventWaiting:
		p.log.Info("waiting for tollgated", "err", ev.Err)
	case agent.EventDaemonGone:
		p.log.Info("tollgated left the bus; its pending connections got the default action")
	case agent.EventDaemonBack:
		p.log.Info("tollgated is back; registered again")
	}
}

// troubleText says what went wrong with an answer, for the window.
func troubleText(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, dbus.ErrNotFound):
		return "That connection was already decided (elsewhere, or its time ran out)."
	case errors.Is(err, dbus.ErrNotAuthorized):
		return "Not authorized to answer this connection: " + err.Error()
	}
	return "Could not answer: " + err.Error()
}

// publish hands a new queue to the window: it shows the window when a new
// prompt is to be seen and hides it when nothing waits.
func (p *Prompt) publish(q []shared.Pending, ev agent.Event) {
	if n := int64(len(q)); p.waiting.Swap(n) != n && p.o.OnChange != nil {
		p.o.OnChange(int(n))
	}
	p.ui(func() {
		changed := p.m.SetQueue(q, p.now())
		if changed {
			cur, _ := p.m.Current()
			p.app0, p.appFound = desktop.App{}, false
			if p.o.Apps != nil {
				p.app0, p.appFound = p.o.Apps.Lookup(cur.Connection.Exe, cur.Connection.App)
			}
		}
		p.render()
		switch {
		case len(q) == 0 && p.visible:
			p.hide()
		case len(q) > 0 && !p.visible && (changed || ev.Kind == agent.EventAdded):
			p.w.Show()
			p.visible = true
		}
	})
}

// hide hides the window (Fyne's goroutine); the groups keep waiting.
func (p *Prompt) hide() {
	p.w.Hide()
	p.visible = false
}

// key and click run on Fyne's goroutine (the canvas and button callbacks).
func (p *Prompt) key(k promptmodel.Key) {
	if a, ok := p.m.Key(k, p.now()); ok {
		p.send(a)
	}
	p.render()
}

func (p *Prompt) click(action shared.Action) {
	p.w.Canvas().Unfocus() // Enter must reach the prompt, not a focused button
	if a, ok := p.m.Click(action, p.now()); ok {
		p.send(a)
	}
	p.render()
}

func (p *Prompt) send(a shared.Answer) {
	select {
	case p.answers <- a:
	default: // one answer at a time: the model holds the rest back
		p.m.Answered("An answer is still on its way; try again.")
	}
}

// render shows the model (Fyne's goroutine).
func (p *Prompt) render() {
	cur, ok := p.m.Current()
	if !ok {
		return
	}
	c := cur.Connection
	p.headline.SetText(promptmodel.Headline(c, p.app0, p.appFound))
	p.more.SetText(p.m.MoreText())
	if p.appFound && p.app0.IconPath != "" {
		if p.icon.File != p.app0.IconPath {
			p.icon.Resource, p.icon.File = nil, p.app0.IconPath
			p.icon.Refresh()
		}
	} else if p.icon.File != "" || p.icon.Resource == nil {
		p.icon.File, p.icon.Resource = "", theme.ComputerIcon()
		p.icon.Refresh()
	}
	facts := promptmodel.Facts(cur, p.app0, p.appFound)
	if p.m.Details() {
		facts = append(facts, promptmodel.DetailFacts(cur, p.app0, p.appFound)...)
	}
	setFacts(p.facts, facts)
	p.factsBox.Refresh() // the new labels take the override's sizes
	p.syncing = true
	var lifetimes []string
	for _, l := range promptmodel.Lifetimes {
		if p.m.LifetimeAvailable(l.Value) {
			lifetimes = append(lifetimes, l.Label)
		}
	}
	p.lifetime.Options = lifetimes
	p.lifetime.SetSelected(promptmodel.Label(promptmodel.Lifetimes, p.m.Lifetime()))
	p.scope.SetSelected(promptmodel.Label(promptmodel.Scopes, p.m.Scope()))
	p.lifetime.Refresh()
	p.syncing = false
	p.renderChoice()
	if msg := p.m.Message(); msg != "" {
		p.message.SetText(msg)
		p.message.Show()
	} else {
		p.message.Hide()
	}
	p.renderTime()
}

// renderChoice shows which answer Enter gives: the hint in the colour of
// its button, and that button outlined (Fyne's goroutine).
func (p *Prompt) renderChoice() {
	th := p.app.Settings().Theme()
	v := p.app.Settings().ThemeVariant()
	p.enter.SetText(p.m.EnterText())
	allow := p.m.Action() == shared.ActionAllow
	p.allowMark.StrokeColor, p.denyMark.StrokeColor = color.Transparent, color.Transparent
	if allow {
		p.enter.Importance = widget.HighImportance
		p.allowMark.StrokeColor = th.Color(theme.ColorNamePrimary, v)
	} else {
		p.enter.Importance = widget.DangerImportance
		p.denyMark.StrokeColor = th.Color(theme.ColorNameError, v)
	}
	p.enter.Refresh()
	p.allowMark.Refresh()
	p.denyMark.Refresh()
}

// renderTime shows the countdown and the arming delay (Fyne's goroutine).
func (p *Prompt) renderTime() {
	if p.m.Waiting() == 0 {
		return
	}
	now := p.now()
	p.countdown.SetText(p.m.CountdownText(now))
	switch left := p.m.ArmLeft(now); {
	case p.m.Busy():
		p.arming.SetText("Answering…")
	case left > 0:
		p.arming.SetText(fmt.Sprintf("Answers possible in %.1fs", left.Seconds()))
	default:
		p.arming.SetText("")
	}
}

// compactTheme is the app's theme with less padding inside each label:
// the fact lines read as one block, and the window stays short.
type compactTheme struct{ app fyne.App }

func (c compactTheme) th() fyne.Theme { return c.app.Settings().Theme() }

func (c compactTheme) Color(n fyne.ThemeColorName, v fyne.ThemeVariant) color.Color {
	return c.th().Color(n, v)
}
func (c compactTheme) Font(s fyne.TextStyle) fyne.Resource     { return c.th().Font(s) }
func (c compactTheme) Icon(n fyne.ThemeIconName) fyne.Resource { return c.th().Icon(n) }
func (c compactTheme) Size(n fyne.ThemeSizeName) float32 {
	s := c.th().Size(n)
	if n == theme.SizeNameInnerPadding {
		return s / 2
	}
	return s
}

// setFacts shows fact lines as label/value rows of a form layout. Values
// wrap (a line of facts may be longer than the window is wide); a value
// shortened in the model (Fact.Full) shows whole on hover (hoverText).
func setFacts(c *fyne.Container, fs []promptmodel.Fact) {
	objs := make([]fyne.CanvasObject, 0, 2*len(fs))
	for _, f := range fs {
		l := widget.NewLabelWithStyle(f.Label, fyne.TextAlignTrailing, fyne.TextStyle{Bold: true})
		v := widget.NewLabel(f.Value)
		v.Wrapping = fyne.TextWrapWord
		if f.Full != "" {
			objs = append(objs, l, newHoverText(v, f.Full))
			continue
		}
		objs = append(objs, l, v)
	}
	c.Objects = objs
	c.Refresh()
}
