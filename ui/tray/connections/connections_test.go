package connections

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

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
	"github.com/tollgate-fw/tollgate/ui/tray/connections/connmodel"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeLog is the daemon's connection log: it answers filters as the daemon
// does (newest first, Since inclusive, Limit) and records them.
type fakeLog struct {
	mu      sync.Mutex
	entries []shared.LogEntry // oldest first
	asked   []shared.LogFilter
	err     error
	rules   []shared.Rule
	gets    int
}

func (f *fakeLog) GetRule(ctx context.Context, id string) (shared.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	for _, r := range f.rules {
		if r.ID == id {
			return r, nil
		}
	}
	return shared.Rule{}, fmt.Errorf("GetRule: %w", dbus.ErrNotFound)
}

func (f *fakeLog) RecentConnections(ctx context.Context, lf shared.LogFilter) ([]shared.LogEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, lf)
	if f.err != nil {
		return nil, f.err
	}
	var out []shared.LogEntry
	for i := len(f.entries) - 1; i >= 0; i-- {
		if lf.Matches(f.entries[i]) {
			out = append(out, f.entries[i])
		}
		if lf.Limit > 0 && len(out) == lf.Limit {
			break
		}
	}
	return out, nil
}

func (f *fakeLog) add(es ...shared.LogEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, es...)
}

func (f *fakeLog) filters() []shared.LogFilter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

type apps map[string]string

func (a apps) Lookup(exe, app string) (desktop.App, bool) {
	n, ok := a[exe]
	return desktop.App{Name: n}, ok
}

func entry(id uint64, sec int, exe string, action shared.Action) shared.LogEntry {
	return shared.LogEntry{
		Connection: shared.Connection{ID: id, Time: t0.Add(time.Duration(sec) * time.Second), Direction: shared.DirectionOut,
			Proto: shared.ProtoTCP, RemoteIP: netip.MustParseAddr("192.0.2.7"), RemotePort: 443, UID: 1000, User: "alice",
			PID: 4242, Exe: exe, Cmdline: exe + " --flag"},
		Verdict: shared.Verdict{Action: action, RuleID: "r1", Reason: "rule r1 matched"},
	}
}

// waitFor waits for cond (proctest.WaitFor) with this package's deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, 10*time.Second, what, cond)
}

func polled(w *Window) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.polled
}

// open shows a window that polls once at Show and then only when the test
// calls fetch (the interval is an hour).
func open(t *testing.T, f *fakeLog, o Options) *Window {
	t.Helper()
	a := test.NewTempApp(t)
	if o.Interval == 0 {
		o.Interval = time.Hour
	}
	o.Location = time.UTC
	w := NewWindow(a, f, o)
	t.Cleanup(func() {
		w.Close()
		w.Wait()
	})
	w.Show()
	waitFor(t, "first poll", func() bool { return polled(w) >= 1 })
	return w
}

func shownIDs(w *Window) []uint64 {
	var ids []uint64
	for i := range w.model.Len() {
		r, _ := w.model.Row(i)
		ids = append(ids, r.Entry.Connection.ID)
	}
	return ids
}

func TestPollsSinceNewestWithoutDuplicates(t *testing.T) {
	f := &fakeLog{}
	f.add(entry(1, 1, "/usr/bin/curl", shared.ActionAllow), entry(2, 2, "/usr/bin/curl", shared.ActionDeny))
	w := open(t, f, Options{MaxRows: 3})
	if got := shownIDs(w); !slices.Equal(got, []uint64{2, 1}) {
		t.Fatalf("first poll shows %v", got)
	}
	if got := f.filters()[0]; !got.Since.IsZero() || got.Limit != 3 {
		t.Errorf("first poll asked %+v, want no Since and Limit = MaxRows", got)
	}

	// One more at the newest time and two later: the next poll asks since
	// the newest seen and adds each connection once.
	f.add(entry(3, 2, "/usr/bin/wget", shared.ActionAllow), entry(4, 5, "/usr/bin/wget", shared.ActionReject), entry(5, 6, "/usr/bin/ssh", shared.ActionAllow))
	w.fetch(context.Background())
	asked := f.filters()
	if last := asked[len(asked)-1]; !last.Since.Equal(t0.Add(2*time.Second)) || last.Limit != shared.MaxLogLimit {
		t.Errorf("second poll asked %+v, want Since = the newest seen", last)
	}
	// Bounded to 3 rows: the oldest went.
	if got := shownIDs(w); !slices.Equal(got, []uint64{5, 4, 3}) {
		t.Errorf("after the second poll: %v, want [5 4 3]", got)
	}
	if w.status.Text != "3 of 3 connections" {
		t.Errorf("status %q", w.status.Text)
	}
	// Nothing new: nothing changes, and Since stays.
	w.fetch(context.Background())
	if got := shownIDs(w); !slices.Equal(got, []uint64{5, 4, 3}) {
		t.Errorf("after an empty poll: %v", got)
	}
}

func TestPollingRepeatsWhileOpenAndStopsWhenClosed(t *testing.T) {
	f := &fakeLog{}
	a := test.NewTempApp(t)
	w := NewWindow(a, f, Options{Interval: time.Millisecond})
	w.Show()
	f.add(entry(1, 1, "/usr/bin/curl", shared.ActionAllow))
	waitFor(t, "the connection to show", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.polled >= 3 && w.since.Equal(t0.Add(time.Second))
	})
	w.Close()
	w.Wait()
	n := len(f.filters())
	f.add(entry(2, 2, "/usr/bin/curl", shared.ActionAllow))
	w.Show() // polls again at once
	waitFor(t, "the second connection", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.since.Equal(t0.Add(2 * time.Second))
	})
	w.Close()
	w.Wait()
	if len(f.filters()) <= n {
		t.Error("reopening did not poll")
	}
}

func TestFilterWidgets(t *testing.T) {
	f := &fakeLog{}
	f.add(entry(1, 1, "/usr/lib/firefox/firefox", shared.ActionAllow), entry(2, 2, "/usr/bin/curl", shared.ActionDeny),
		entry(3, 3, "/usr/bin/curl", shared.ActionAllow))
	w := open(t, f, Options{Apps: apps{"/usr/lib/firefox/firefox": "Firefox"}})
	if !slices.Equal(w.appSel.Options, []string{allApps, "curl", "Firefox"}) {
		t.Fatalf("app choices %v", w.appSel.Options)
	}
	w.appSel.SetSelected("curl")
	if got := shownIDs(w); !slices.Equal(got, []uint64{3, 2}) {
		t.Errorf("app curl: %v", got)
	}
	w.verdictSel.SetSelected(string(shared.ActionDeny))
	if got := shownIDs(w); !slices.Equal(got, []uint64{2}) {
		t.Errorf("curl denied: %v", got)
	}
	w.appSel.SetSelected(allApps)
	if got := shownIDs(w); !slices.Equal(got, []uint64{2}) {
		t.Errorf("denied: %v", got)
	}
	// The cells show the model.
	cell := widget.NewLabel("")
	w.table.UpdateCell(widget.TableCellID{Row: 0, Col: int(connmodel.ColVerdict)}, cell)
	if cell.Text != "deny" || cell.Importance != widget.DangerImportance {
		t.Errorf("verdict cell %q importance %v", cell.Text, cell.Importance)
	}
}

func TestMakeRuleFromSelectedRow(t *testing.T) {
	f := &fakeLog{}
	e := entry(7, 1, "/usr/bin/curl", shared.ActionDeny)
	e.Connection.Hosts, e.Connection.HostSource = []string{"example.org"}, shared.HostFromProcess
	e.Verdict = shared.Verdict{Action: shared.ActionDeny, Unasked: true, Reason: "no rule matched and nobody can be asked: default action deny"}
	f.add(entry(6, 0, "/usr/bin/ssh", shared.ActionAllow), e)
	var made []shared.Rule
	w := open(t, f, Options{Apps: apps{"/usr/bin/curl": "cURL"}, MakeRule: func(r shared.Rule) { made = append(made, r) }})

	if !w.makeBtn.Disabled() {
		t.Error("Make rule… enabled without a selection")
	}
	w.table.Select(widget.TableCellID{Row: 0, Col: 2})
	if w.makeBtn.Disabled() {
		t.Fatal("Make rule… disabled with a selection")
	}
	for _, want := range []string{"pid 4242", "user alice", "command /usr/bin/curl --flag", "why: no rule matched"} {
		if !strings.Contains(w.detail.Text, want) {
			t.Errorf("detail %q lacks %q", w.detail.Text, want)
		}
	}
	test.Tap(w.makeBtn)
	want := shared.Rule{Name: "cURL to example.org port 443", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
		Match: shared.Match{Exe: "/usr/bin/curl", Host: "example.org", Port: shared.PortRange{Lo: 443, Hi: 443},
			Proto: shared.ProtoTCP, Direction: shared.DirectionOut}}
	if len(made) != 1 || !reflect.DeepEqual(made[0], want) {
		t.Fatalf("MakeRule got %+v\nwant %+v", made, want)
	}

	// A new connection arrives above: the selection stays on the same one.
	f.add(entry(8, 9, "/usr/bin/ssh", shared.ActionAllow))
	w.fetch(context.Background())
	test.Tap(w.makeBtn)
	if len(made) != 2 || made[1].Match.Exe != "/usr/bin/curl" {
		t.Errorf("after a poll, Make rule… used %+v", made[len(made)-1])
	}
}

func TestNoMakeRuleWithoutCallback(t *testing.T) {
	w := open(t, &fakeLog{}, Options{})
	if w.makeBtn.Visible() {
		t.Error("Make rule… shown without a MakeRule callback")
	}
	w.makeRule() // must not panic
}

func TestPollErrorShown(t *testing.T) {
	f := &fakeLog{err: errors.New("org.tollgate.Firewall1 not on the bus")}
	w := open(t, f, Options{})
	if !strings.Contains(w.status.Text, "not on the bus") {
		t.Errorf("status %q", w.status.Text)
	}
	// The next poll after the daemon is back starts from scratch.
	f.mu.Lock()
	f.err = nil
	f.mu.Unlock()
	f.add(entry(1, 1, "/usr/bin/curl", shared.ActionAllow))
	w.fetch(context.Background())
	if w.model.Total() != 1 || w.status.Text != fmt.Sprintf("%d of %d connections", 1, 1) {
		t.Errorf("after recovery: %d rows, status %q", w.model.Total(), w.status.Text)
	}
}

func TestWindowRendersTable(t *testing.T) {
	f := &fakeLog{}
	e := entry(1, 1, "/usr/bin/curl", shared.ActionDeny)
	e.Verdict = shared.Verdict{Action: shared.ActionDeny, Unasked: true}
	f.add(e)
	w := open(t, f, Options{MakeRule: func(shared.Rule) {}})
	markup := test.RenderToMarkup(w.win.Canvas())
	for _, want := range []string{"Verdict", "192.0.2.7:443", "not asked", "Prompt", "Make rule…", "1 of 1 connections"} {
		if !strings.Contains(markup, want) {
			t.Errorf("rendered window lacks %q", want)
		}
	}
}

func TestRuleColumnNamesRules(t *testing.T) {
	f := &fakeLog{rules: []shared.Rule{
		{ID: "r1", Name: "curl to the API", Action: shared.ActionAllow},
		{ID: "r2", Action: shared.ActionDeny, Match: shared.Match{Exe: "/usr/bin/wget", Port: shared.PortRange{Lo: 80, Hi: 80}}},
	}}
	f.add(entry(1, 1, "/usr/bin/curl", shared.ActionAllow))
	w := open(t, f, Options{})
	rule := func(id uint64) string {
		r, _ := w.model.Row(w.model.Index(connmodel.Key{ID: id}))
		return r.Rule
	}
	if got := rule(1); got != "curl to the API" {
		t.Errorf("Rule column %q, want the rule's name", got)
	}
	e := entry(2, 2, "/usr/bin/wget", shared.ActionDeny)
	e.Verdict.RuleID = "r2"
	gone := entry(3, 3, "/usr/bin/wget", shared.ActionDeny)
	gone.Verdict.RuleID = "r-deleted"
	f.add(e, gone)
	w.fetch(context.Background())
	if got := rule(2); got != "wget to any, port 80" {
		t.Errorf("unnamed rule shown as %q", got)
	}
	if got := rule(3); got != "r-deleted" {
		t.Errorf("a rule no longer listed shown as %q, want its id", got)
	}
	// A rule is asked for once, found or not.
	f.mu.Lock()
	gets := f.gets
	f.mu.Unlock()
	again := entry(5, 5, "/usr/bin/wget", shared.ActionDeny)
	again.Verdict.RuleID = "r-deleted"
	f.add(entry(4, 4, "/usr/bin/curl", shared.ActionAllow), again)
	w.fetch(context.Background())
	f.mu.Lock()
	if f.gets != gets {
		t.Errorf("rules asked for again (%d -> %d)", gets, f.gets)
	}
	f.mu.Unlock()
	// Many new rules at once are asked for a poll's worth at a time, all
	// in the end.
	for i := range 3 * namesPerPoll {
		id := fmt.Sprintf("many%03d", i)
		f.mu.Lock()
		f.rules = append(f.rules, shared.Rule{ID: id, Name: "rule " + id, Action: shared.ActionAllow})
		f.mu.Unlock()
		e := entry(uint64(100+i), 100+i, "/usr/bin/curl", shared.ActionAllow)
		e.Verdict.RuleID = id
		f.add(e)
	}
	for range 3 {
		w.fetch(context.Background())
	}
	for i := range 3 * namesPerPoll {
		if got, want := rule(uint64(100+i)), fmt.Sprintf("rule many%03d", i); got != want {
			t.Fatalf("Rule column of entry %d: %q, want %q", 100+i, got, want)
		}
	}
}

func TestDaemonGoneWorded(t *testing.T) {
	f := &fakeLog{err: fmt.Errorf("RecentConnections: %w", &dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown", Message: "The name org.tollgate.Firewall1 was not provided by any .service files"})}
	w := open(t, f, Options{})
	if !strings.Contains(w.status.Text, "tollgated is not running") || strings.Contains(w.status.Text, ".service") {
		t.Errorf("status %q", w.status.Text)
	}
}

func TestColumnsFitWindow(t *testing.T) {
	w := open(t, &fakeLog{}, Options{})
	var total float32
	for _, c := range columnWidths {
		total += c
	}
	// Fyne's table keeps a little room for its scroll bar and padding.
	if room := w.win.Canvas().Size().Width - 2*theme.Padding(); total > room {
		t.Errorf("columns are %v wide, the window has %v", total, room)
	}
}
