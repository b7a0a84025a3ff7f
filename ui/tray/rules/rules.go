// Package rules is the tray's rules editor window: the table of the rules
// the desktop user can see (search, filters, sorting), an add/edit form,
// enable/disable, delete with confirmation, and live updates on the
// daemon's RulesChanged signal while the window is open.
//
// It owns the window and its talk with the daemon about rules. What the
// table shows and how form input becomes a rule is rulemodel's (plain Go).
// It must not import the daemon and decides nothing on its own: every
// change goes to the daemon, which checks it again and whose refusal is
// shown as it came.
package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
	"github.com/tollgate-fw/tollgate/ui/tray/rules/rulemodel"
	"github.com/tollgate-fw/tollgate/ui/tray/winwork"
)

// Client is what the window needs of the daemon; *dbus.Client satisfies
// it.
type Client interface {
	ListRules(ctx context.Context) ([]shared.Rule, error)
	// AddRuleFields adds a rule given as shared field names: a system
	// rule says owner "system" (rulemodel.WritableFields).
	AddRuleFields(ctx context.Context, f map[string]any) (string, error)
	UpdateRule(ctx context.Context, id string, r shared.Rule) error
	DeleteRule(ctx context.Context, id string) error
	Signals(ctx context.Context) (<-chan dbus.Signal, error)
}

// AppFinder names applications by executable (*desktop.Index).
type AppFinder = desktop.Finder

// Options configure the window.
type Options struct {
	Apps     AppFinder      // optional: application names for the App column
	Log      *slog.Logger   // nil = discard
	UID      uint32         // the desktop user: owner of new rules, "me" in the table
	Location *time.Location // for times; nil = time.Local
	// RetryDelay is how long to wait before subscribing to signals again
	// after the subscription failed or ended; 0 = 5 s.
	RetryDelay time.Duration
	// UI runs a function on Fyne's goroutine; nil = fyne.Do. The tray
	// passes its own, so its tests serialize every widget update.
	UI  func(func())
	Now func() time.Time // the clock for short times; nil = time.Now
}

// columnWidths are the widths of the table's columns, in
// rulemodel.Column order.
var columnWidths = [rulemodel.NumColumns]float32{36, 226, 150, 196, 96, 56, 64, 116, 80, 50, 96}

// callTimeout bounds every call to the daemon.
const callTimeout = 30 * time.Second

// Filter choices.
const (
	allApps    = "All apps"
	allActions = "All actions"
	ownerAll   = "All owners"
	ownerMine  = "Mine"
	ownerSys   = "System"
	enabledAll = "Enabled or not"
	enabledOn  = "Enabled"
	enabledOff = "Disabled"
)

// Window is the rules editor. Its methods are called from the Fyne
// goroutine (menu actions, Options.UI); results of calls to the daemon
// come back through Options.UI.
type Window struct {
	app fyne.App
	c   Client
	o   Options
	log *slog.Logger

	win   fyne.Window
	model *rulemodel.Table

	table      *widget.Table
	search     *widget.Entry
	appSel     *widget.Select
	actionSel  *widget.Select
	ownerSel   *widget.Select
	enabledSel *widget.Select
	addBtn     *widget.Button
	editBtn    *widget.Button
	toggleBtn  *widget.Button
	deleteBtn  *widget.Button
	count      *widget.Label
	detail     *widget.Label
	errLabel   *widget.Label
	confirm    *dialog.ConfirmDialog

	built    bool   // build is done: filter callbacks may run
	selected string // rule id
	editor   *editor

	following winwork.Work // live updates while the window is open

	// Lists of rules are asked for concurrently (signals, after a change);
	// only a list newer than the one shown is shown.
	listSeq  atomic.Uint64
	shownSeq uint64 // UI goroutine only

	mu      sync.Mutex
	settled int // results of daemon calls applied on the UI: tests wait on it
}

// NewWindow makes the rules window; nothing is shown or asked of the
// daemon before Show.
func NewWindow(a fyne.App, c Client, o Options) *Window {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 5 * time.Second
	}
	if o.UI == nil {
		o.UI = fyne.Do
	}
	w := &Window{app: a, c: c, o: o, log: o.Log}
	w.model = rulemodel.New(rulemodel.Options{UID: o.UID, AppName: w.appName, Location: o.Location, Now: o.Now})
	return w
}

func (w *Window) appName(exe, app string) (string, bool) {
	return desktop.NameOf(w.o.Apps, exe, app)
}

// Show opens the window (or brings it to the front), loads the rules and
// follows RulesChanged until the window is closed.
func (w *Window) Show() {
	if w.win == nil {
		w.build()
	}
	w.following.Start(w.follow)
	w.win.Show()
	w.win.RequestFocus()
}

// NewRule opens the window and the add form filled from prefill (as
// "Make rule…" in the connections window builds it). prefill is a
// template: its id and bookkeeping are dropped, the owner is the desktop
// user.
func (w *Window) NewRule(prefill shared.Rule) {
	w.Show()
	r := shared.Rule{
		Name: prefill.Name, Action: prefill.Action, Lifetime: prefill.Lifetime, Until: prefill.Until,
		Owner: w.o.UID, Enabled: prefill.Enabled, Priority: prefill.Priority, Note: prefill.Note, Match: prefill.Match,
	}
	w.openEditor(r, "", "")
}

// Wait waits until the background work Show started (following RulesChanged) has
// ended after Close. Call it off Fyne's goroutine: that work's last
// update may still need it.
func (w *Window) Wait() { w.following.Wait() }

// Close hides the window and its form and stops following the daemon.
func (w *Window) Close() {
	w.following.Stop()
	if w.editor != nil {
		w.editor.close()
	}
	if w.win != nil {
		w.win.Hide()
	}
}

func (w *Window) build() {
	w.win = w.app.NewWindow("Tollgate — Rules")
	w.win.SetCloseIntercept(w.Close)

	w.table = widget.NewTable(
		func() (int, int) { return w.model.Len(), int(rulemodel.NumColumns) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		w.updateCell,
	)
	w.table.ShowHeaderRow = true
	w.table.CreateHeader = func() fyne.CanvasObject {
		b := widget.NewButton("", nil)
		b.Alignment = widget.ButtonAlignLeading
		return b
	}
	w.table.UpdateHeader = w.updateHeader
	w.table.OnSelected = func(id widget.TableCellID) {
		if r, ok := w.model.Row(id.Row); ok {
			w.selected = r.Rule.ID
		}
		w.updateButtons()
	}
	// The columns fit the window's width (1200): Hits and Last hit stay
	// in sight without scrolling sideways.
	for c, width := range columnWidths {
		w.table.SetColumnWidth(c, width)
	}

	w.search = widget.NewEntry()
	w.search.SetPlaceHolder("Search name, app, host, port…")
	w.search.OnChanged = func(string) { w.applyFilter() }
	w.appSel = widget.NewSelect([]string{allApps}, func(string) { w.applyFilter() })
	w.appSel.SetSelected(allApps)
	w.actionSel = widget.NewSelect([]string{allActions, string(shared.ActionAllow), string(shared.ActionDeny), string(shared.ActionReject)}, func(string) { w.applyFilter() })
	w.actionSel.SetSelected(allActions)
	w.ownerSel = widget.NewSelect([]string{ownerAll, ownerMine, ownerSys}, func(string) { w.applyFilter() })
	w.ownerSel.SetSelected(ownerAll)
	w.enabledSel = widget.NewSelect([]string{enabledAll, enabledOn, enabledOff}, func(string) { w.applyFilter() })
	w.enabledSel.SetSelected(enabledAll)

	w.addBtn = widget.NewButton("Add…", func() {
		w.openEditor(shared.Rule{Owner: w.o.UID, Enabled: true, Lifetime: shared.LifetimeForever}, "", "")
	})
	w.editBtn = widget.NewButton("Edit…", w.editSelected)
	w.toggleBtn = widget.NewButton("Disable", w.toggleSelected)
	w.deleteBtn = widget.NewButton("Delete…", w.deleteSelected)
	w.deleteBtn.Importance = widget.DangerImportance
	w.count = widget.NewLabel("")
	w.detail = widget.NewLabel("")
	w.detail.Wrapping = fyne.TextWrapWord
	w.errLabel = widget.NewLabel("")
	w.errLabel.Importance = widget.DangerImportance
	w.errLabel.Wrapping = fyne.TextWrapWord
	w.errLabel.Hide()

	filters := container.NewGridWithColumns(4, w.appSel, w.actionSel, w.ownerSel, w.enabledSel)
	top := container.NewVBox(w.search, filters)
	buttons := container.NewHBox(w.addBtn, w.editBtn, w.toggleBtn, w.deleteBtn, w.count)
	bottom := container.NewVBox(w.detail, w.errLabel, buttons)
	w.win.SetContent(container.NewBorder(top, bottom, nil, nil, w.table))
	w.win.Resize(fyne.NewSize(1200, 560))
	w.win.Canvas().SetOnTypedKey(func(ev *fyne.KeyEvent) {
		if ev.Name == fyne.KeyEscape {
			w.Close()
		}
	})
	w.built = true
	w.refreshTable()
}

func (w *Window) updateCell(id widget.TableCellID, o fyne.CanvasObject) {
	l := o.(*widget.Label)
	r, ok := w.model.Row(id.Row)
	if !ok {
		l.SetText("")
		return
	}
	// Disabled rules are greyed.
	imp := widget.MediumImportance
	if !r.Rule.Enabled {
		imp = widget.LowImportance
	}
	if l.Importance != imp {
		l.Importance = imp
		l.Text = "" // SetText refreshes only when the text changes
	}
	l.SetText(r.Cell(rulemodel.Column(id.Col)))
}

func (w *Window) updateHeader(id widget.TableCellID, o fyne.CanvasObject) {
	b := o.(*widget.Button)
	col := rulemodel.Column(id.Col)
	text := col.Title()
	if c, desc := w.model.Sort(); c == col {
		if desc {
			text += " ▼"
		} else {
			text += " ▲"
		}
	}
	b.SetText(text)
	b.OnTapped = func() {
		w.model.ToggleSort(col)
		w.refreshTable()
	}
}

func (w *Window) applyFilter() {
	if !w.built {
		return
	}
	f := rulemodel.Filter{Search: w.search.Text}
	if s := w.appSel.Selected; s != allApps {
		f.App = s
	}
	if s := w.actionSel.Selected; s != allActions && s != "" {
		f.Action = shared.Action(s)
	}
	switch w.ownerSel.Selected {
	case ownerMine:
		f.Owner = rulemodel.OwnerMine
	case ownerSys:
		f.Owner = rulemodel.OwnerSystem
	}
	switch w.enabledSel.Selected {
	case enabledOn:
		f.Enabled = rulemodel.EnabledOn
	case enabledOff:
		f.Enabled = rulemodel.EnabledOff
	}
	w.model.SetFilter(f)
	w.refreshTable()
}

// refreshTable shows the model again, keeping the selected rule selected
// when it is still shown.
func (w *Window) refreshTable() {
	w.table.Refresh()
	if i := w.model.Index(w.selected); w.selected != "" && i >= 0 {
		w.table.Select(widget.TableCellID{Row: i, Col: 0})
	} else {
		w.selected = ""
		w.table.UnselectAll()
	}
	w.count.SetText(fmt.Sprintf("%d of %d rules", w.model.Len(), w.model.Total()))
	w.updateButtons()
}

func (w *Window) selectedRow() (rulemodel.Row, bool) {
	if w.selected == "" {
		return rulemodel.Row{}, false
	}
	return w.model.Find(w.selected)
}

func (w *Window) updateButtons() {
	r, ok := w.selectedRow()
	setEnabled(w.editBtn, ok)
	setEnabled(w.toggleBtn, ok && r.Toggleable)
	setEnabled(w.deleteBtn, ok && r.Editable)
	switch {
	case ok && !r.Editable && !r.AdminEditable:
		w.editBtn.SetText("View…")
	default:
		w.editBtn.SetText("Edit…")
	}
	if ok {
		w.detail.SetText(rulemodel.Details(r))
	} else {
		w.detail.SetText("")
	}
	if ok && !r.Rule.Enabled {
		w.toggleBtn.SetText("Enable")
	} else {
		w.toggleBtn.SetText("Disable")
	}
}

func setEnabled(b *widget.Button, on bool) {
	if on {
		b.Enable()
	} else {
		b.Disable()
	}
}

func (w *Window) showError(err error) {
	if err == nil {
		w.errLabel.SetText("")
		w.errLabel.Hide()
		return
	}
	w.errLabel.SetText(err.Error())
	w.errLabel.Show()
}

// changeTimeout bounds a change: the daemon may ask polkit, and polkit an
// administrator for a password.
const changeTimeout = 2 * time.Minute

// call runs fn (a call to the daemon) off the UI goroutine and then done
// on it.
func (w *Window) call(fn func(ctx context.Context) error, done func(error)) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), changeTimeout)
		err := fn(ctx)
		cancel()
		w.o.UI(func() {
			done(err)
			w.mu.Lock()
			w.settled++
			w.mu.Unlock()
		})
	}()
}

// follow subscribes to the daemon's signals, loads the rules, and loads
// them again on RulesChanged and when the daemon comes back, until ctx
// ends.
func (w *Window) follow(ctx context.Context) {
	for ctx.Err() == nil {
		sigs, err := w.c.Signals(ctx)
		if err != nil {
			w.log.Warn("rules window: subscribe to signals", "err", err)
			w.load(ctx, fmt.Errorf("no live updates: %w", err))
			if !winwork.Sleep(ctx, w.o.RetryDelay) {
				return
			}
			continue
		}
		w.load(ctx, nil)
		if !w.consume(ctx, sigs) {
			return
		}
		if !winwork.Sleep(ctx, w.o.RetryDelay) {
			return
		}
	}
}

// consume handles signals until ctx ends (false) or the channel closes
// (true: subscribe again).
func (w *Window) consume(ctx context.Context, sigs <-chan dbus.Signal) bool {
	for {
		var s dbus.Signal
		var ok bool
		select {
		case <-ctx.Done():
			return false
		case s, ok = <-sigs:
		}
		if !ok {
			return ctx.Err() == nil
		}
		switch {
		case s.Name == dbus.SignalRulesChanged, s.Name == dbus.SignalDaemonChanged && s.Owner != "":
			// A burst of changes makes one reload.
		drain:
			for {
				select {
				case _, ok := <-sigs:
					if !ok {
						break drain
					}
				default:
					break drain
				}
			}
			w.load(ctx, nil)
		case s.Name == dbus.SignalDaemonChanged:
			w.o.UI(func() {
				w.showError(errors.New("tollgated is not running: the rules shown may be out of date"))
				w.mu.Lock()
				w.settled++
				w.mu.Unlock()
			})
		}
	}
}

// load lists the rules and shows them; note is shown when the list loads.
func (w *Window) load(ctx context.Context, note error) {
	seq := w.listSeq.Add(1)
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	rules, err := w.c.ListRules(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		w.log.Warn("rules window: list rules", "err", err)
	}
	w.o.UI(func() {
		if err != nil {
			w.showError(fmt.Errorf("list rules: %w", err))
		} else if w.setRules(seq, rules) {
			w.showError(note)
		}
		w.mu.Lock()
		w.settled++
		w.mu.Unlock()
	})
}

// setRules shows list number seq, unless a newer one is shown already.
func (w *Window) setRules(seq uint64, rules []shared.Rule) bool {
	if seq < w.shownSeq {
		return false
	}
	w.shownSeq = seq
	w.model.SetRules(rules)
	sel := w.appSel.Selected
	w.appSel.SetOptions(append([]string{allApps}, w.model.Apps()...))
	w.appSel.SetSelected(sel) // keeps a choice whose rules are gone: the user made it
	w.refreshTable()
	if w.editor != nil {
		w.editor.rulesChanged()
	}
	return true
}

func (w *Window) reload() {
	var rules []shared.Rule
	seq := w.listSeq.Add(1)
	w.call(func(ctx context.Context) error {
		var err error
		rules, err = w.c.ListRules(ctx)
		return err
	}, func(err error) {
		if err != nil {
			w.showError(fmt.Errorf("list rules: %w", err))
			return
		}
		w.setRules(seq, rules)
	})
}

func (w *Window) editSelected() {
	r, ok := w.selectedRow()
	if !ok {
		return
	}
	e := w.openEditor(r.Rule, r.Rule.ID, r.ReadOnly)
	if r.AdminEditable {
		e.offerAdmin()
	}
}

func (w *Window) toggleSelected() {
	r, ok := w.selectedRow()
	if !ok || !r.Toggleable {
		return
	}
	rule := r.Rule
	rule.Enabled = !rule.Enabled
	verb := "disable"
	if rule.Enabled {
		verb = "enable"
	}
	w.toggleBtn.Disable()
	w.call(func(ctx context.Context) error {
		return w.c.UpdateRule(ctx, rule.ID, rule)
	}, func(err error) {
		if err != nil {
			w.showError(fmt.Errorf("%s rule %s: %w", verb, rule.ID, err))
			w.updateButtons()
			return
		}
		w.showError(nil)
		w.reload()
	})
}

func (w *Window) deleteSelected() {
	r, ok := w.selectedRow()
	if !ok || !r.Editable {
		return
	}
	id := r.Rule.ID
	name := r.Name
	msg := fmt.Sprintf("Delete the rule %q (%s %s to %s)?\nConnections it decided will be asked about again.",
		name, r.Action, r.App, r.Remote)
	w.confirm = dialog.NewConfirm("Delete rule", msg, func(ok bool) {
		if !ok {
			return
		}
		w.call(func(ctx context.Context) error {
			return w.c.DeleteRule(ctx, id)
		}, func(err error) {
			if err != nil {
				w.showError(fmt.Errorf("delete rule %s: %w", id, err))
				return
			}
			w.showError(nil)
			w.reload()
		})
	}, w.win)
	w.confirm.SetConfirmText("Delete")
	w.confirm.SetDismissText("Keep")
	w.confirm.SetConfirmImportance(widget.DangerImportance)
	w.confirm.Show()
}
