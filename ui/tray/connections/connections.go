// Package connections is the tray's connections window: the recent
// connections from the daemon's log with their verdict and deciding rule,
// filters by app and verdict, and "Make rule…", which hands a rule
// pre-filled from the selected connection to the rules editor.
//
// It owns the window and its polling of RecentConnections while it is
// open. What rows show and the proposed rule are connmodel's (plain Go).
// It must not import the daemon or make rules itself: Options.MakeRule
// (the rules window) does, through the daemon.
package connections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
	"github.com/tollgate-fw/tollgate/ui/tray/connections/connmodel"
	"github.com/tollgate-fw/tollgate/ui/tray/rules/rulemodel"
	"github.com/tollgate-fw/tollgate/ui/tray/winwork"
)

// Client is what the window needs of the daemon; *dbus.Client satisfies
// it.
type Client interface {
	RecentConnections(ctx context.Context, f shared.LogFilter) ([]shared.LogEntry, error)
	// GetRule names a rule that decided (the Rule column).
	GetRule(ctx context.Context, id string) (shared.Rule, error)
}

// AppFinder names applications (*desktop.Index).
type AppFinder = desktop.Finder

// Options configure the window.
type Options struct {
	Apps AppFinder // optional: application names
	// MakeRule is called (on the Fyne goroutine) with the rule "Make rule…"
	// proposes for the selected connection; the tray wires it to the rules
	// window's NewRule. Nil hides the button.
	MakeRule func(shared.Rule)
	Log      *slog.Logger   // nil = discard
	Interval time.Duration  // between polls while open; 0 = 2 s
	MaxRows  int            // connections kept; 0 = connmodel.DefaultMax
	Location *time.Location // for times; nil = time.Local
	// UI runs a function on Fyne's goroutine; nil = fyne.Do. The tray
	// passes its own, so its tests serialize every widget update.
	UI  func(func())
	Now func() time.Time // the clock for short times; nil = time.Now
}

// columnWidths are the widths of the table's columns, in
// connmodel.Column order: together they fit the window (1220).
var columnWidths = [connmodel.NumColumns]float32{84, 150, 230, 280, 50, 40, 110, 150, 90}

// callTimeout bounds every call to the daemon.
const callTimeout = 30 * time.Second

const (
	allApps     = "All apps"
	allVerdicts = "All verdicts"
)

// Window is the connections window. Its methods are called from the Fyne
// goroutine; poll results come back through Options.UI.
type Window struct {
	app fyne.App
	c   Client
	o   Options
	log *slog.Logger

	win   fyne.Window
	model *connmodel.Log

	table      *widget.Table
	appSel     *widget.Select
	verdictSel *widget.Select
	makeBtn    *widget.Button
	detail     *widget.Label
	status     *widget.Label
	built      bool
	selected   connmodel.Key
	hasSel     bool

	polling winwork.Work // while the window is open

	// The polling goroutine's own.
	listedFor map[string]struct{} // rule ids ever queued for naming (found or not)
	toName    []string            // of them, those still to ask the daemon for
	lastErr   string              // the last poll's trouble, logged once

	mu     sync.Mutex
	since  time.Time // Since of the next poll: the newest connection seen
	polled int       // polls whose result reached the UI: tests wait on it
}

// NewWindow makes the connections window; nothing is shown or asked of the
// daemon before Show.
func NewWindow(a fyne.App, c Client, o Options) *Window {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.MaxRows <= 0 || o.MaxRows > shared.MaxLogLimit {
		o.MaxRows = min(connmodel.DefaultMax, shared.MaxLogLimit)
	}
	if o.UI == nil {
		o.UI = fyne.Do
	}
	w := &Window{app: a, c: c, o: o, log: o.Log}
	w.model = connmodel.New(connmodel.Options{Max: o.MaxRows, AppName: w.appName, Location: o.Location, Now: o.Now})
	w.listedFor = map[string]struct{}{}
	return w
}

func (w *Window) appName(exe, app string) (string, bool) {
	return desktop.NameOf(w.o.Apps, exe, app)
}

// Show opens the window (or brings it to the front) and polls the
// connection log until it is closed.
func (w *Window) Show() {
	if w.win == nil {
		w.build()
	}
	w.polling.Start(w.poll)
	w.win.Show()
	w.win.RequestFocus()
}

// Wait waits until the background work Show started (polling) has
// ended after Close. Call it off Fyne's goroutine: that work's last
// update may still need it.
func (w *Window) Wait() { w.polling.Wait() }

// Close hides the window and stops polling.
func (w *Window) Close() {
	w.polling.Stop()
	if w.win != nil {
		w.win.Hide()
	}
}

func (w *Window) build() {
	w.win = w.app.NewWindow("Tollgate — Connections")
	w.win.SetCloseIntercept(w.Close)

	w.table = widget.NewTable(
		func() (int, int) { return w.model.Len(), int(connmodel.NumColumns) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		w.updateCell,
	)
	w.table.ShowHeaderRow = true
	w.table.CreateHeader = func() fyne.CanvasObject { return widget.NewLabel("") }
	w.table.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		o.(*widget.Label).SetText(connmodel.Column(id.Col).Title())
	}
	w.table.OnSelected = func(id widget.TableCellID) {
		if r, ok := w.model.Row(id.Row); ok {
			w.selected, w.hasSel = connmodel.KeyOf(r.Entry), true
		}
		w.showSelection()
	}
	for c, width := range columnWidths {
		w.table.SetColumnWidth(c, width)
	}

	w.appSel = widget.NewSelect([]string{allApps}, func(string) { w.applyFilter() })
	w.appSel.SetSelected(allApps)
	w.verdictSel = widget.NewSelect([]string{allVerdicts, string(shared.ActionAllow), string(shared.ActionDeny), string(shared.ActionReject)},
		func(string) { w.applyFilter() })
	w.verdictSel.SetSelected(allVerdicts)
	w.makeBtn = widget.NewButton("Make rule…", w.makeRule)
	if w.o.MakeRule == nil {
		w.makeBtn.Hide()
	}
	w.detail = widget.NewLabel("")
	w.detail.Wrapping = fyne.TextWrapWord
	w.status = widget.NewLabel("")

	top := container.NewGridWithColumns(2, w.appSel, w.verdictSel)
	bottom := container.NewVBox(w.detail, container.NewBorder(nil, nil, nil, w.makeBtn, w.status))
	w.win.SetContent(container.NewBorder(top, bottom, nil, nil, w.table))
	w.win.Resize(fyne.NewSize(1220, 600))
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
	imp := widget.MediumImportance
	if col := connmodel.Column(id.Col); col == connmodel.ColVerdict && r.Entry.Verdict.Action != shared.ActionAllow {
		imp = widget.DangerImportance
	}
	if l.Importance != imp {
		l.Importance = imp
	}
	l.SetText(r.Cell(connmodel.Column(id.Col)))
}

func (w *Window) applyFilter() {
	if !w.built {
		return
	}
	var f connmodel.Filter
	if s := w.appSel.Selected; s != allApps {
		f.App = s
	}
	if s := w.verdictSel.Selected; s != allVerdicts && s != "" {
		f.Verdict = shared.Action(s)
	}
	w.model.SetFilter(f)
	w.refreshTable()
}

// refreshTable shows the model again, keeping the selected connection
// selected while it is shown.
func (w *Window) refreshTable() {
	w.table.Refresh()
	if i := w.model.Index(w.selected); w.hasSel && i >= 0 {
		w.table.Select(widget.TableCellID{Row: i, Col: 0})
	} else {
		w.hasSel = false
		w.table.UnselectAll()
	}
	w.showSelection()
}

func (w *Window) selectedRow() (connmodel.Row, bool) {
	if !w.hasSel {
		return connmodel.Row{}, false
	}
	i := w.model.Index(w.selected)
	return w.model.Row(i)
}

// showSelection fills the detail line and the button for the selection.
func (w *Window) showSelection() {
	r, ok := w.selectedRow()
	if !ok {
		w.makeBtn.Disable()
		w.detail.SetText("")
		return
	}
	w.makeBtn.Enable()
	w.detail.SetText(details(r.Entry))
}

// details is the selected connection's facts the table has no room for.
func details(e shared.LogEntry) string {
	c := &e.Connection
	var parts []string
	if c.PID != 0 {
		parts = append(parts, "pid "+strconv.Itoa(c.PID))
	}
	switch {
	case c.User != "":
		parts = append(parts, "user "+c.User)
	case c.UID >= 0:
		parts = append(parts, "uid "+strconv.FormatInt(c.UID, 10))
	}
	if c.Cmdline != "" {
		parts = append(parts, "command "+c.Cmdline)
	}
	if c.Attribution == shared.AttributedUIDOnly {
		parts = append(parts, "process not found: attributed to its user only")
	}
	if len(c.Hosts) > 1 {
		parts = append(parts, "names "+strings.Join(c.Hosts, ", "))
	}
	if e.Verdict.Reason != "" {
		parts = append(parts, "why: "+e.Verdict.Reason)
	}
	return strings.Join(parts, " · ")
}

func (w *Window) makeRule() {
	r, ok := w.selectedRow()
	if !ok || w.o.MakeRule == nil {
		return
	}
	w.o.MakeRule(connmodel.RuleFor(r.Entry, w.appName))
}

// poll reads the log at once and then every Interval until ctx ends; each
// poll asks only for what is at least as new as the newest seen.
func (w *Window) poll(ctx context.Context) {
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		w.fetch(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Window) fetch(ctx context.Context) {
	w.mu.Lock()
	since := w.since
	w.mu.Unlock()
	f := shared.LogFilter{Limit: w.o.MaxRows, Since: since}
	if !since.IsZero() {
		f.Limit = shared.MaxLogLimit
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	entries, err := w.c.RecentConnections(cctx, f)
	cancel()
	if ctx.Err() != nil {
		return
	}
	var names map[string]string
	if err != nil {
		if msg := err.Error(); msg != w.lastErr {
			w.log.Warn("connections window: read the connection log", "err", err)
			w.lastErr = msg
		}
	} else {
		w.lastErr = ""
		names = w.namesFor(ctx, entries)
		newest := since
		for _, e := range entries {
			if t := e.Connection.Time; t.After(newest) {
				newest = t
			}
		}
		w.mu.Lock()
		w.since = newest
		w.mu.Unlock()
	}
	w.o.UI(func() {
		if names != nil && w.model.AddRuleNames(names) {
			w.table.Refresh()
			w.showSelection()
		}
		w.apply(entries, err)
		w.mu.Lock()
		w.polled++
		w.mu.Unlock()
	})
}

// namesPerPoll bounds the rules one poll asks the daemon for by id; the
// rest wait for the next polls.
const namesPerPoll = 32

// namesFor queues the rules entries name that were never asked for, asks
// the daemon for up to namesPerPoll of the queue and returns their names
// (nil when none). Polling goroutine only.
func (w *Window) namesFor(ctx context.Context, entries []shared.LogEntry) map[string]string {
	for _, e := range entries {
		if id := e.Verdict.RuleID; id != "" {
			if _, ok := w.listedFor[id]; !ok {
				w.listedFor[id] = struct{}{}
				w.toName = append(w.toName, id)
			}
		}
	}
	var names map[string]string
	for asked := 0; len(w.toName) > 0 && asked < namesPerPoll; asked++ {
		id := w.toName[0]
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		r, err := w.c.GetRule(cctx, id)
		cancel()
		switch {
		case errors.Is(err, dbus.ErrNotFound):
			// Deleted since, or another user's: shown by its id.
		case err != nil:
			w.log.Warn("connections window: get a rule for its name", "rule", id, "err", err)
			return names // asked again at the next poll
		default:
			n := r.Name
			if n == "" {
				m := &r.Match
				n = rulemodel.Summary(rulemodel.AppLabel(m.Exe, w.appName), rulemodel.Remote(m), m.Port.String(), orAny(string(m.Proto)))
			}
			if names == nil {
				names = map[string]string{}
			}
			names[id] = n
		}
		w.toName = w.toName[1:]
	}
	return names
}

func orAny(proto string) string {
	if proto == "" {
		return string(shared.ProtoAny)
	}
	return proto
}

func (w *Window) apply(entries []shared.LogEntry, err error) {
	if err != nil {
		w.status.SetText(troubleText(err))
		return
	}
	if w.model.Add(entries) > 0 {
		sel := w.appSel.Selected
		w.appSel.SetOptions(append([]string{allApps}, w.model.Apps()...))
		w.appSel.SetSelected(sel)
		w.refreshTable()
	}
	w.status.SetText(fmt.Sprintf("%d of %d connections", w.model.Len(), w.model.Total()))
}

// troubleText words a failed read of the log for the status line: the
// rows already shown stay.
func troubleText(err error) string {
	var de *dbus.Error
	switch {
	case errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
		de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner"):
		return "tollgated is not running: showing the connections read before"
	case errors.Is(err, context.DeadlineExceeded):
		return "tollgated does not answer: showing the connections read before"
	}
	return fmt.Sprintf("Could not read the connection log (%v): showing the connections read before", err)
}
