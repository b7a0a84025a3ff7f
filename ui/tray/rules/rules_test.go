package rules

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
	"github.com/tollgate-fw/tollgate/ui/tray/rules/rulemodel"
)

const me = 1000

// fakeDaemon keeps rules as state, as the daemon would, and records what
// it was asked.
type fakeDaemon struct {
	mu       sync.Mutex
	rules    []shared.Rule
	nextID   int
	lists    int
	added    []shared.Rule
	updated  []shared.Rule
	deleted  []string
	addErr   error
	delErr   error
	sigs     chan dbus.Signal
	sigCalls int
}

func newFake(rules ...shared.Rule) *fakeDaemon {
	return &fakeDaemon{rules: rules, sigs: make(chan dbus.Signal, 8), nextID: 100}
}

func (f *fakeDaemon) ListRules(ctx context.Context) ([]shared.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return slices.Clone(f.rules), nil
}

// AddRuleFields reads the fields as the daemon does: no owner means the
// caller's (me), "system" a system rule.
func (f *fakeDaemon) AddRuleFields(ctx context.Context, fields map[string]any) (string, error) {
	r, err := shared.RuleFromFields(fields)
	if err != nil {
		return "", fmt.Errorf("AddRule: %w: %v", dbus.ErrInvalidArgument, err)
	}
	if _, ok := fields["owner"]; !ok {
		r.Owner = me
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, r)
	if f.addErr != nil {
		return "", f.addErr
	}
	f.nextID++
	r.ID = fmt.Sprintf("r%d", f.nextID)
	f.rules = append(f.rules, r)
	return r.ID, nil
}

func (f *fakeDaemon) UpdateRule(ctx context.Context, id string, r shared.Rule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updated = append(f.updated, r)
	for i := range f.rules {
		if f.rules[i].ID == id {
			r.ID = id
			f.rules[i] = r
			return nil
		}
	}
	return fmt.Errorf("UpdateRule: %w", dbus.ErrNotFound)
}

func (f *fakeDaemon) DeleteRule(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, id)
	if f.delErr != nil {
		return f.delErr
	}
	for i := range f.rules {
		if f.rules[i].ID == id {
			f.rules = slices.Delete(f.rules, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("DeleteRule: %w", dbus.ErrNotFound)
}

func (f *fakeDaemon) Signals(ctx context.Context) (<-chan dbus.Signal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sigCalls++
	return f.sigs, nil
}

func (f *fakeDaemon) snapshot() (added, updated []shared.Rule, deleted []string, lists int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.added), slices.Clone(f.updated), slices.Clone(f.deleted), f.lists
}

type apps map[string]string

func (a apps) Lookup(exe, app string) (desktop.App, bool) {
	n, ok := a[exe]
	return desktop.App{Name: n}, ok
}

func testRules() []shared.Rule {
	return []shared.Rule{
		{ID: "r1", Name: "firefox web", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: me, Enabled: true,
			Match: shared.Match{Exe: "/usr/lib/firefox/firefox", Host: "*.mozilla.org", Port: shared.PortRange{Lo: 443, Hi: 443}, Proto: shared.ProtoTCP}, Hits: 5},
		{ID: "r2", Name: "curl", Action: shared.ActionDeny, Lifetime: shared.LifetimeForever, Owner: me, Enabled: true,
			Match: shared.Match{Exe: "/usr/bin/curl"}},
		{ID: "r3", Name: "ntp", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: shared.OwnerSystem, Enabled: true,
			Match:  shared.Match{Exe: "/usr/sbin/chronyd", Port: shared.PortRange{Lo: 123, Hi: 123}, Proto: shared.ProtoUDP},
			Source: "rules.d/base.toml", ReadOnly: true},
		{ID: "r4", Name: "tracker", Action: shared.ActionReject, Lifetime: shared.LifetimeForever, Owner: shared.OwnerSystem, Enabled: true,
			Match: shared.Match{Host: "tracker.example"}},
	}
}

// open shows a rules window on a fake daemon and waits for the first load.
func open(t *testing.T, f *fakeDaemon) *Window {
	t.Helper()
	a := test.NewTempApp(t)
	w := NewWindow(a, f, Options{UID: me, Apps: apps{"/usr/lib/firefox/firefox": "Firefox"}, Location: time.UTC})
	t.Cleanup(func() {
		w.Close()
		w.Wait()
	})
	w.Show()
	waitSettled(t, w, 1)
	return w
}

// waitFor waits for cond (proctest.WaitFor) with this package's deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, 10*time.Second, what, cond)
}

// waitSettled waits until n results of daemon calls reached the UI: after
// that the UI is the test goroutine's again.
func waitSettled(t *testing.T, w *Window, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d settled calls", n), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.settled >= n
	})
}

func settled(w *Window) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.settled
}

func selectRule(t *testing.T, w *Window, id string) {
	t.Helper()
	i := w.model.Index(id)
	if i < 0 {
		t.Fatalf("rule %s not shown", id)
	}
	w.table.Select(widget.TableCellID{Row: i, Col: 1})
	if w.selected != id {
		t.Fatalf("selected %q, want %q", w.selected, id)
	}
}

// findButton finds a button by its text under o (dialogs included).
func findButton(o fyne.CanvasObject, text string) *widget.Button {
	var found *widget.Button
	walk(o, func(o fyne.CanvasObject) bool {
		if b, ok := o.(*widget.Button); ok && b.Text == text {
			found = b
			return false
		}
		return true
	})
	return found
}

func walk(o fyne.CanvasObject, visit func(fyne.CanvasObject) bool) bool {
	if o == nil || !visit(o) {
		return false
	}
	var kids []fyne.CanvasObject
	switch x := o.(type) {
	case *fyne.Container:
		kids = x.Objects
	case fyne.Widget:
		kids = test.WidgetRenderer(x).Objects()
	}
	for _, k := range kids {
		if !walk(k, visit) {
			return false
		}
	}
	return true
}

func TestShowListsRulesWithAppNames(t *testing.T) {
	w := open(t, newFake(testRules()...))
	if w.model.Len() != 4 {
		t.Fatalf("%d rows, want 4", w.model.Len())
	}
	r, _ := w.model.Find("r1")
	if r.App != "Firefox" {
		t.Errorf("App of r1 = %q, want the desktop name", r.App)
	}
	if r, _ := w.model.Find("r2"); r.App != "curl" {
		t.Errorf("App of r2 = %q, want the exe's base name", r.App)
	}
	if w.count.Text != "4 of 4 rules" {
		t.Errorf("count %q", w.count.Text)
	}
	if !strings.HasPrefix(w.win.Title(), "Tollgate") {
		t.Errorf("title %q", w.win.Title())
	}
	// The table's cells show the model: row of r1, App column.
	cell := widget.NewLabel("")
	w.table.UpdateCell(widget.TableCellID{Row: w.model.Index("r1"), Col: int(rulemodel.ColApp)}, cell)
	if cell.Text != "Firefox" {
		t.Errorf("App cell of r1 = %q", cell.Text)
	}
}

func TestFiltersAndSortFromWidgets(t *testing.T) {
	w := open(t, newFake(testRules()...))
	test.Type(w.search, "mozilla")
	if w.model.Len() != 1 || w.count.Text != "1 of 4 rules" {
		t.Fatalf("search: %d rows, count %q", w.model.Len(), w.count.Text)
	}
	w.search.SetText("")
	w.ownerSel.SetSelected(ownerSys)
	if w.model.Len() != 2 {
		t.Errorf("owner system: %d rows, want 2", w.model.Len())
	}
	w.ownerSel.SetSelected(ownerAll)
	w.actionSel.SetSelected(string(shared.ActionDeny))
	if r, ok := w.model.Row(0); w.model.Len() != 1 || !ok || r.Rule.ID != "r2" {
		t.Errorf("action deny: %d rows", w.model.Len())
	}
	w.actionSel.SetSelected(allActions)
	if !slices.Contains(w.appSel.Options, "Firefox") || !slices.Contains(w.appSel.Options, "any app") {
		t.Errorf("app filter choices %v", w.appSel.Options)
	}
	w.appSel.SetSelected("Firefox")
	if w.model.Len() != 1 {
		t.Errorf("app Firefox: %d rows", w.model.Len())
	}
	w.appSel.SetSelected(allApps)

	// A header click sorts by its column, a second one reverses.
	hdr := widget.NewButton("", nil)
	w.table.UpdateHeader(widget.TableCellID{Row: -1, Col: int(rulemodel.ColHits)}, hdr)
	test.Tap(hdr)
	if c, desc := w.model.Sort(); c != rulemodel.ColHits || desc {
		t.Fatalf("after header tap: sort %v desc=%v", c, desc)
	}
	test.Tap(hdr)
	if r, _ := w.model.Row(0); r.Rule.ID != "r1" {
		t.Errorf("hits descending: first row %s, want r1", r.Rule.ID)
	}
	w.table.UpdateHeader(widget.TableCellID{Row: -1, Col: int(rulemodel.ColHits)}, hdr)
	if hdr.Text != "Hits ▼" {
		t.Errorf("header text %q", hdr.Text)
	}
}

func TestLiveUpdates(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)
	selectRule(t, w, "r2")

	f.mu.Lock()
	f.rules = append(f.rules, shared.Rule{ID: "r9", Name: "new one", Action: shared.ActionAllow, Lifetime: shared.LifetimeSession, Owner: me, Enabled: true})
	f.mu.Unlock()
	f.sigs <- dbus.Signal{Name: dbus.SignalRulesChanged}
	waitSettled(t, w, 2)
	if _, ok := w.model.Find("r9"); !ok || w.model.Total() != 5 {
		t.Fatalf("RulesChanged did not reload: %d rules", w.model.Total())
	}
	if w.selected != "r2" {
		t.Errorf("selection lost on reload: %q", w.selected)
	}

	f.sigs <- dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ""}
	waitSettled(t, w, 3)
	if !w.errLabel.Visible() || !strings.Contains(w.errLabel.Text, "not running") {
		t.Errorf("daemon gone: error label %q visible=%v", w.errLabel.Text, w.errLabel.Visible())
	}
	f.mu.Lock()
	f.rules = f.rules[:1]
	f.mu.Unlock()
	f.sigs <- dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.42"}
	waitSettled(t, w, 4)
	if w.model.Total() != 1 || w.errLabel.Visible() {
		t.Errorf("daemon back: %d rules, error %q", w.model.Total(), w.errLabel.Text)
	}
	if w.selected != "" || !w.deleteBtn.Disabled() {
		t.Errorf("a deleted rule stays selected: %q", w.selected)
	}

	// Closed: no more following.
	w.Close()
	w.Wait()
	_, _, _, lists := f.snapshot()
	f.sigs <- dbus.Signal{Name: dbus.SignalRulesChanged}
	if _, _, _, n := f.snapshot(); n != lists {
		t.Errorf("closed window listed rules again")
	}
	<-f.sigs
	// Shown again: subscribes and loads again.
	before := settled(w)
	w.Show()
	waitSettled(t, w, before+1)
	f.mu.Lock()
	calls := f.sigCalls
	f.mu.Unlock()
	if calls != 2 {
		t.Errorf("Signals called %d times, want once per opening (2)", calls)
	}
}

func TestEditorRejectsInvalidRule(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)

	// Action missing: the validator's message, nothing sent.
	test.Tap(w.addBtn)
	e := w.editor
	if e == nil || !e.save.Visible() {
		t.Fatal("Add… opened no form")
	}
	test.Type(e.exe, "/usr/bin/wget")
	test.Tap(e.save)
	want := validatorMsg(t, map[string]any{"exe": "/usr/bin/wget"})
	if !e.msg.Visible() || e.msg.Text != want {
		t.Errorf("message %q (visible %v), want the validator's %q", e.msg.Text, e.msg.Visible(), want)
	}

	// Port out of range.
	e.action.SetSelected("allow")
	test.Type(e.port, "99999")
	test.Tap(e.save)
	want = validatorMsg(t, map[string]any{"action": "allow", "port": "99999"})
	if e.msg.Text != want {
		t.Errorf("message %q, want the validator's %q", e.msg.Text, want)
	}
	if !strings.Contains(e.msg.Text, "99999") {
		t.Errorf("message %q does not name the port", e.msg.Text)
	}
	if e.win.Canvas().Focused() != e.port {
		t.Error("the port entry is not focused after its error")
	}
	if w.editor != e {
		t.Error("the form closed on an invalid rule")
	}

	// Fixed: exactly one AddRule, the valid one.
	e.port.SetText("443")
	test.Tap(e.save)
	waitSettled(t, w, 3) // the add, then the reload
	added, _, _, _ := f.snapshot()
	if len(added) != 1 {
		t.Fatalf("AddRule called %d times, want only for the valid form", len(added))
	}
	if added[0].Match.Port != (shared.PortRange{Lo: 443, Hi: 443}) {
		t.Errorf("added port %v", added[0].Match.Port)
	}
	if w.editor != nil {
		t.Error("form still open after saving")
	}
	if w.selected == "" || w.model.Total() != 5 {
		t.Errorf("new rule not shown and selected: selected %q, %d rules", w.selected, w.model.Total())
	}
}

func validatorMsg(t *testing.T, fields map[string]any) string {
	t.Helper()
	r, err := shared.RuleFromFields(fields)
	if err == nil {
		r.Normalize()
		err = r.Validate()
	}
	if err == nil {
		t.Fatalf("the validator accepts %v", fields)
	}
	return err.Error()
}

func TestNewRulePrefilledAddsRightRule(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)
	w.NewRule(shared.Rule{
		ID: "ignored", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: 4242, Enabled: true, Hits: 7,
		Match: shared.Match{Exe: "/usr/bin/curl", Host: "example.org", Port: shared.PortRange{Lo: 443, Hi: 443},
			Proto: shared.ProtoTCP, Direction: shared.DirectionOut},
	})
	e := w.editor
	if e == nil {
		t.Fatal("NewRule opened no form")
	}
	for got, want := range map[string]string{e.exe.Text: "/usr/bin/curl", e.host.Text: "example.org", e.port.Text: "443",
		e.proto.Selected: "tcp", e.direction.Selected: "out", e.action.Selected: "allow", e.lifetime.Selected: "forever"} {
		if got != want {
			t.Errorf("prefilled %q, want %q", got, want)
		}
	}
	test.Type(e.name, "curl to example")
	e.lifetime.SetSelected("session")
	test.Tap(e.save)
	waitSettled(t, w, 3)
	added, _, _, _ := f.snapshot()
	want := shared.Rule{Name: "curl to example", Action: shared.ActionAllow, Lifetime: shared.LifetimeSession, Owner: me, Enabled: true,
		Match: shared.Match{Exe: "/usr/bin/curl", Host: "example.org", Port: shared.PortRange{Lo: 443, Hi: 443},
			Proto: shared.ProtoTCP, Direction: shared.DirectionOut}}
	if len(added) != 1 || !reflect.DeepEqual(added[0], want) {
		t.Errorf("AddRule got %+v\nwant %+v", added, want)
	}
}

func TestEditUpdatesRule(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)
	selectRule(t, w, "r1")
	test.Tap(w.editBtn)
	e := w.editor
	if e == nil || e.id != "r1" {
		t.Fatal("Edit… opened no form for r1")
	}
	e.ip.SetText("2001:db8::/32")
	e.host.SetText("")
	test.Tap(e.save)
	waitSettled(t, w, 3)
	_, updated, _, _ := f.snapshot()
	if len(updated) != 1 {
		t.Fatalf("UpdateRule called %d times", len(updated))
	}
	u := updated[0]
	if u.Match.Host != "" || u.Match.IP != netip.MustParsePrefix("2001:db8::/32") || u.Match.Exe != "/usr/lib/firefox/firefox" || u.Hits != 0 {
		t.Errorf("updated rule %+v", u)
	}
}

func TestDaemonRefusalShown(t *testing.T) {
	f := newFake()
	f.addErr = &dbus.Error{Name: dbus.ErrorNotAuthorized, Message: "a system rule needs admin rights"}
	w := open(t, f)
	w.NewRule(shared.Rule{Action: shared.ActionDeny, Match: shared.Match{Host: "example.org"}})
	e := w.editor
	test.Tap(e.save)
	waitSettled(t, w, 2)
	if w.editor != e || !strings.Contains(e.msg.Text, "a system rule needs admin rights") || e.save.Disabled() {
		t.Errorf("refusal: form open %v, message %q, save disabled %v", w.editor == e, e.msg.Text, e.save.Disabled())
	}
}

func TestDeleteAsksFirst(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)
	selectRule(t, w, "r2")

	test.Tap(w.deleteBtn)
	if _, _, deleted, _ := f.snapshot(); len(deleted) != 0 {
		t.Fatal("deleted without asking")
	}
	top := w.win.Canvas().Overlays().Top()
	keep, del := findButton(top, "Keep"), findButton(top, "Delete")
	if keep == nil || del == nil {
		t.Fatal("no confirmation dialog with Keep and Delete")
	}
	test.Tap(keep)
	test.Tap(w.deleteBtn)
	test.Tap(findButton(w.win.Canvas().Overlays().Top(), "Delete"))
	waitSettled(t, w, 3)
	if _, _, deleted, _ := f.snapshot(); !slices.Equal(deleted, []string{"r2"}) {
		t.Errorf("deleted %v, want [r2] once (Keep deletes nothing)", deleted)
	}
	if _, ok := w.model.Find("r2"); ok {
		t.Error("deleted rule still listed")
	}
}

func TestToggleEnabled(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)
	selectRule(t, w, "r2")
	if w.toggleBtn.Text != "Disable" {
		t.Fatalf("toggle says %q", w.toggleBtn.Text)
	}
	test.Tap(w.toggleBtn)
	waitSettled(t, w, 3)
	_, updated, _, _ := f.snapshot()
	if len(updated) != 1 || updated[0].Enabled || updated[0].Match.Exe != "/usr/bin/curl" {
		t.Fatalf("UpdateRule %+v", updated)
	}
	if w.toggleBtn.Text != "Enable" {
		t.Errorf("after disabling, toggle says %q", w.toggleBtn.Text)
	}
}

func TestReadOnlyRules(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)
	for _, tc := range []struct {
		id, edit string
		unlock   bool
	}{
		{"r3", "View…", false}, // from a rules file: nobody changes it here
		{"r4", "Edit…", true},  // a system rule: an administrator may
	} {
		id := tc.id
		selectRule(t, w, id)
		if !w.deleteBtn.Disabled() || !w.toggleBtn.Disabled() || w.editBtn.Text != tc.edit {
			t.Errorf("%s: delete disabled %v, toggle disabled %v, edit %q", id, w.deleteBtn.Disabled(), w.toggleBtn.Disabled(), w.editBtn.Text)
		}
		if !strings.Contains(w.detail.Text, "Rule "+id) {
			t.Errorf("%s: detail line %q", id, w.detail.Text)
		}
		test.Tap(w.editBtn)
		e := w.editor
		if e.save.Visible() || !e.exe.Disabled() || !e.action.Disabled() || e.info.Text == "" || !e.info.Visible() {
			t.Errorf("%s: read-only form: save visible %v, exe disabled %v, reason %q", id, e.save.Visible(), e.exe.Disabled(), e.info.Text)
		}
		if e.exe.PlaceHolder != "" || e.host.PlaceHolder != "" {
			t.Errorf("%s: read-only form shows hints (%q, %q) that read like values", id, e.exe.PlaceHolder, e.host.PlaceHolder)
		}
		if e.unlock.Visible() != tc.unlock {
			t.Errorf("%s: edit as administrator offered %v, want %v", id, e.unlock.Visible(), tc.unlock)
		}
		test.Tap(e.cancel)
		if w.editor != nil {
			t.Errorf("%s: Close left the form open", id)
		}
	}
	// Deleting a read-only rule is not offered even when asked directly.
	w.deleteSelected()
	if w.win.Canvas().Overlays().Top() != nil {
		t.Error("a confirmation for a read-only rule")
	}
}

func TestEditSystemRuleAsAdministrator(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)
	selectRule(t, w, "r4")
	test.Tap(w.editBtn)
	e := w.editor
	test.Tap(e.unlock)
	if !e.save.Visible() || e.exe.Disabled() || e.unlock.Visible() || !strings.Contains(e.info.Text, "administrator") {
		t.Fatalf("unlocked form: save visible %v, exe disabled %v, info %q", e.save.Visible(), e.exe.Disabled(), e.info.Text)
	}
	e.enabled.SetChecked(false)
	test.Tap(e.save)
	waitSettled(t, w, 3)
	_, updated, _, _ := f.snapshot()
	if len(updated) != 1 || updated[0].Owner != shared.OwnerSystem || updated[0].Enabled || updated[0].Match.Host != "tracker.example" {
		t.Fatalf("UpdateRule %+v", updated)
	}
}

func TestNewSystemRule(t *testing.T) {
	f := newFake(testRules()...)
	w := open(t, f)
	test.Tap(w.addBtn)
	e := w.editor
	if e.owner.Selected != ownerUser || e.owner.Disabled() {
		t.Fatalf("new rule owner %q (disabled %v)", e.owner.Selected, e.owner.Disabled())
	}
	e.action.SetSelected("reject")
	test.Type(e.port, "23")
	e.owner.SetSelected(ownerSystem)
	test.Tap(e.save)
	waitSettled(t, w, 3)
	test.Tap(w.addBtn)
	e = w.editor
	e.action.SetSelected("allow")
	test.Type(e.port, "22")
	e.win.Canvas().Focus(e.port)
	e.port.TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn}) // Enter saves
	waitSettled(t, w, 5)
	added, _, _, _ := f.snapshot()
	if len(added) != 2 {
		t.Fatalf("added %+v", added)
	}
	if added[0].Owner != shared.OwnerSystem || added[0].Action != shared.ActionReject {
		t.Errorf("system rule added as %+v", added[0])
	}
	if added[1].Owner != me || added[1].Match.Port.Lo != 22 {
		t.Errorf("own rule added as %+v", added[1])
	}
	// Escape closes the form.
	test.Tap(w.addBtn)
	w.editor.win.Canvas().OnTypedKey()(&fyne.KeyEvent{Name: fyne.KeyEscape})
	if w.editor != nil {
		t.Error("Escape left the form open")
	}
}

func TestProcessRuleNotToggled(t *testing.T) {
	p := shared.Rule{ID: "p1", Action: shared.ActionAllow, Lifetime: shared.LifetimeProcess, Owner: me, Enabled: true, PID: 42,
		Match: shared.Match{Exe: "/usr/bin/curl"}}
	f := newFake(append(testRules(), p)...)
	w := open(t, f)
	selectRule(t, w, "p1")
	if !w.toggleBtn.Disabled() || w.deleteBtn.Disabled() || w.editBtn.Disabled() {
		t.Errorf("process rule: toggle disabled %v, delete disabled %v, edit disabled %v", w.toggleBtn.Disabled(), w.deleteBtn.Disabled(), w.editBtn.Disabled())
	}
	test.Tap(w.editBtn)
	test.Tap(w.editor.save)
	if !w.editor.msg.Visible() || !strings.Contains(w.editor.msg.Text, "lifetime") {
		t.Errorf("saving a process rule as it is: message %q", w.editor.msg.Text)
	}
	if _, updated, _, _ := f.snapshot(); len(updated) != 0 {
		t.Errorf("UpdateRule called: %+v", updated)
	}
}

func TestSignalsFailStillLoads(t *testing.T) {
	a := test.NewTempApp(t)
	f := newFake(testRules()...)
	c := failingSignals{f}
	w := NewWindow(a, c, Options{UID: me, RetryDelay: time.Hour})
	t.Cleanup(func() { w.Close(); w.Wait() })
	w.Show()
	waitSettled(t, w, 1)
	if w.model.Total() != 4 || !strings.Contains(w.errLabel.Text, "no live updates") {
		t.Errorf("%d rules, error %q", w.model.Total(), w.errLabel.Text)
	}
}

type failingSignals struct{ *fakeDaemon }

func (failingSignals) Signals(ctx context.Context) (<-chan dbus.Signal, error) {
	return nil, errors.New("bus gone")
}

func TestDeleteRefusedShowsDaemonError(t *testing.T) {
	f := newFake(testRules()...)
	f.delErr = fmt.Errorf("DeleteRule: %w", &dbus.Error{Name: dbus.ErrorNotAuthorized, Message: "changing a rule of your own: polkit said no"})
	w := open(t, f)
	selectRule(t, w, "r1")
	test.Tap(w.deleteBtn)
	test.Tap(findButton(w.win.Canvas().Overlays().Top(), "Delete"))
	waitSettled(t, w, 2)
	if !w.errLabel.Visible() || !strings.Contains(w.errLabel.Text, "polkit said no") || !strings.Contains(w.errLabel.Text, "r1") {
		t.Errorf("error label %q visible=%v", w.errLabel.Text, w.errLabel.Visible())
	}
	if _, ok := w.model.Find("r1"); !ok {
		t.Error("a refused delete removed the rule from the table")
	}
}

func TestOlderListNotShownOverNewer(t *testing.T) {
	w := open(t, newFake(testRules()...))
	old := w.listSeq.Add(1)
	newer := w.listSeq.Add(1)
	if !w.setRules(newer, testRules()[:2]) {
		t.Fatal("newest list not shown")
	}
	if w.setRules(old, testRules()) || w.model.Total() != 2 {
		t.Errorf("an older list replaced a newer one: %d rules", w.model.Total())
	}
}

func TestWindowRendersTable(t *testing.T) {
	w := open(t, newFake(testRules()...))
	markup := test.RenderToMarkup(w.win.Canvas())
	for _, want := range []string{"Name ▲", "Firefox", "*.mozilla.org", "system", "4 of 4 rules"} {
		if !strings.Contains(markup, want) {
			t.Errorf("rendered window lacks %q", want)
		}
	}
}

func TestCellsGreyOnlyDisabledRules(t *testing.T) {
	rules := testRules()
	rules[1].Enabled = false // r2, curl: the user's own, disabled
	w := open(t, newFake(rules...))
	imp := map[string]widget.Importance{}
	for i := range w.model.Len() {
		r, _ := w.model.Row(i)
		l := widget.NewLabel("")
		w.updateCell(widget.TableCellID{Row: i, Col: int(rulemodel.ColName)}, l)
		imp[r.Rule.ID] = l.Importance
	}
	// A system rule is read-only but must stay readable; a disabled rule
	// is greyed.
	want := map[string]widget.Importance{"r1": widget.MediumImportance, "r2": widget.LowImportance,
		"r3": widget.MediumImportance, "r4": widget.MediumImportance}
	if !reflect.DeepEqual(imp, want) {
		t.Errorf("importance by rule %v, want %v", imp, want)
	}
	// Every column fits the window: nothing needs a sideways scroll.
	var total float32
	for _, c := range columnWidths {
		total += c
	}
	if total > w.win.Canvas().Size().Width {
		t.Errorf("columns are %v wide, the window %v", total, w.win.Canvas().Size().Width)
	}
}
