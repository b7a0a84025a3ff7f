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

// AppFinder names applications and finds their icons; *desktop.Index
// satisfies it.
type AppFinder interface {
	Lookup(exe, app string) (desktop.App, bool)
}

// Options configure the prompt. Zero values take the defaults.
type Options struct {
	// Action is the preselected action, the one Enter answers: deny unless
	// set (Enter alone never lets a connection through; allowing takes the
	// Allow button or A then Enter).
	Action   shared.Action
	Lifetime shared.Lifetime    // preselected lifetime; default once
	Scope    shared.AnswerScope // preselected scope; default exe-host-port
	ArmDelay time.Duration      // keys and clicks ignored after a prompt appears; 0 = 1s, < 0 = none
	Apps     AppFinder          // optional: application names and icons
	OnChange func(waiting int)  // called (from Run's goroutine) whenever the number of waiting groups changes
	Log      *slog.Logger
	Now      func() time.Time // the clock; nil = time.Now (tests set it)
	// UI runs a function on Fyne's goroutine; nil = fyne.Do. The tray
	// passes its own, so its tests serialize every widget update.
	UI func(func())
}

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

	// Fyne's goroutine only, from here on.
	m        *promptmodel.Model
	w        fyne.Window
	visible  bool
	app0     desktop.App // the shown connection's application
	appFound bool

	icon      *canvas.Image
	headline  *widget.Label
	more      *widget.Label
	facts     *fyne.Container
	details   *fyne.Container
	detailsOn *widget.Check
	lifetime  *widget.RadioGroup
	scope     *widget.RadioGroup
	countdown *widget.Label
	arming    *widget.Label
	enter     *widget.Label
	message   *widget.Label
	allow     *widget.Button
	deny      *widget.Button
	syncing   bool // choices being set from the model: not the user's
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
	p.headline.Wrapping = fyne.TextWrapWord
	p.more = widget.NewLabel("")
	p.facts = container.New(layout.NewFormLayout())
	p.details = container.New(layout.NewFormLayout())
	p.details.Hide()
	p.detailsOn = widget.NewCheck("Details", func(bool) {
		p.m.ToggleDetails()
		p.w.Canvas().Unfocus() // keys go to the prompt, not the check box
		p.render()
	})
	p.lifetime = widget.NewRadioGroup(nil, func(s string) {
		if p.syncing {
			return
		}
		if l, ok := promptmodel.ValueOf(promptmodel.Lifetimes, s); ok {
			p.m.SetLifetime(l)
		}
		p.w.Canvas().Unfocus()
		p.render()
	})
	p.lifetime.Horizontal = true
	p.lifetime.Required = true
	p.scope = widget.NewRadioGroup(labels(promptmodel.Scopes), func(s string) {
		if p.syncing {
			return
		}
		if sc, ok := promptmodel.ValueOf(promptmodel.Scopes, s); ok {
			p.m.SetScope(sc)
		}
		p.w.Canvas().Unfocus()
		p.render()
	})
	p.scope.Horizontal = true
	p.scope.Required = true
	p.countdown = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	p.arming = widget.NewLabel("")
	p.enter = widget.NewLabel("")
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

	top := container.NewBorder(nil, nil, p.icon, p.more, p.headline)
	choices := container.New(layout.NewFormLayout(),
		widget.NewLabel("Lifetime"), p.lifetime,
		widget.NewLabel("Scope"), p.scope)
	// Readable, not greyed: the keys are half of how a prompt is
	// answered.
	keys := widget.NewLabel("A allow · D deny · Enter confirms · Esc deny once")
	bottom := container.NewVBox(
		widget.NewSeparator(),
		choices,
		container.NewHBox(p.countdown, layout.NewSpacer(), p.arming),
		p.message,
		container.NewHBox(keys, layout.NewSpacer(), p.enter),
		container.NewHBox(layout.NewSpacer(), p.deny, p.allow),
	)
	p.w.SetContent(container.NewVBox(top, widget.NewSeparator(), p.facts, p.detailsOn, p.details, bottom))
	p.w.Resize(fyne.NewSize(680, 0))
	p.w.Canvas().SetOnTypedRune(func(r rune) {
		switch r {
		case 'a', 'A':
			p.key(promptmodel.KeyAllow)
		case 'd', 'D':
			p.key(promptmodel.KeyDeny)
		}
	})
	p.w.Canvas().SetOnTypedKey(func(ev *fyne.KeyEvent) {
		switch ev.Name {
		case fyne.KeyReturn, fyne.KeyEnter:
			p.key(promptmodel.KeyEnter)
		case fyne.KeyEscape:
			p.key(promptmodel.KeyEscape)
		}
	})
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
	setFacts(p.facts, promptmodel.Facts(cur, p.app0, p.appFound))
	setFacts(p.details, promptmodel.DetailFacts(cur, p.app0, p.appFound))
	if p.m.Details() {
		p.details.Show()
	} else {
		p.details.Hide()
	}
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
	p.enter.SetText(p.m.EnterText())
	if msg := p.m.Message(); msg != "" {
		p.message.SetText(msg)
		p.message.Show()
	} else {
		p.message.Hide()
	}
	p.renderTime()
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

// setFacts shows fact lines as label/value rows of a form layout.
func setFacts(c *fyne.Container, fs []promptmodel.Fact) {
	objs := make([]fyne.CanvasObject, 0, 2*len(fs))
	for _, f := range fs {
		l := widget.NewLabelWithStyle(f.Label, fyne.TextAlignTrailing, fyne.TextStyle{Bold: true})
		v := widget.NewLabel(f.Value)
		v.Wrapping = fyne.TextWrapBreak
		objs = append(objs, l, v)
	}
	c.Objects = objs
	c.Refresh()
}
