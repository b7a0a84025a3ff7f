// Package rulemodel is the view-model of the tray's rules editor: the rules
// table (what each column shows, search, filters, sorting) and the add/edit
// form (the form's text turned into a rule by the shared parsers and
// validator).
//
// It owns how rules are presented and how form input becomes a rule. It is
// plain Go: it must not import Fyne, D-Bus or the daemon, and it never talks
// to the daemon (package rules does, and decides nothing the daemon would
// not decide again).
package rulemodel

import (
	"cmp"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// Column is a column of the rules table.
type Column int

// The columns, in display order.
const (
	ColEnabled Column = iota
	ColName
	ColApp
	ColRemote
	ColPort
	ColProto
	ColAction
	ColLifetime
	ColOwner
	ColHits
	ColLastHit
	NumColumns
)

var columnTitles = [NumColumns]string{"On", "Name", "App", "Remote", "Port", "Proto", "Action", "Lifetime", "Owner", "Hits", "Last hit"}

// Title is the column's header text.
func (c Column) Title() string {
	if c < 0 || c >= NumColumns {
		return ""
	}
	return columnTitles[c]
}

// OwnerFilter selects rules by owner.
type OwnerFilter int

const (
	OwnerAll    OwnerFilter = iota
	OwnerMine               // the desktop user's own rules
	OwnerSystem             // system rules (owner root)
)

// EnabledFilter selects rules by their enabled flag.
type EnabledFilter int

const (
	EnabledAll EnabledFilter = iota
	EnabledOn
	EnabledOff
)

// Filter selects the rules the table shows. The zero Filter shows all.
type Filter struct {
	// Search is matched case-insensitively as a substring of the rule's
	// id, name, note, shown app, executable, host, ip, port and unit.
	Search  string
	App     string        // only rules whose App column is exactly this; "" = any
	Action  shared.Action // only this action; "" = any
	Owner   OwnerFilter
	Enabled EnabledFilter
}

// Row is one rule as the table shows it.
type Row struct {
	Rule shared.Rule

	// Column texts.
	Enabled, Name, App, Remote, Port, Proto, Action, Lifetime, Owner, Hits, LastHit string

	// Named says the rule has a name of its own; Name is otherwise a
	// summary of what it matches (a rule an answer made has no name).
	Named bool

	// Editable says whether the desktop user may change or delete the
	// rule; when not, ReadOnly says why. The daemon decides again on
	// every call: this only keeps the window from offering what it would
	// refuse.
	Editable bool
	ReadOnly string
	// AdminEditable says an administrator may change the rule (a system
	// or another user's rule that no file holds): the window offers to
	// edit it "as administrator" and the daemon asks polkit.
	AdminEditable bool
	// Toggleable says the enabled flag can be flipped as it is. A rule
	// bound to one process cannot be sent back to the daemon with that
	// lifetime (the binding is the daemon's bookkeeping).
	Toggleable bool
}

// Cell is the text of column c.
func (r *Row) Cell(c Column) string {
	switch c {
	case ColEnabled:
		return r.Enabled
	case ColName:
		return r.Name
	case ColApp:
		return r.App
	case ColRemote:
		return r.Remote
	case ColPort:
		return r.Port
	case ColProto:
		return r.Proto
	case ColAction:
		return r.Action
	case ColLifetime:
		return r.Lifetime
	case ColOwner:
		return r.Owner
	case ColHits:
		return r.Hits
	case ColLastHit:
		return r.LastHit
	}
	return ""
}

// AppNamer names the application of an executable path (and app id:
// "flatpak:<id>", "snap:<name>" or ""); ok is false when it does not know
// it. A desktop-entry index fits here.
type AppNamer func(exe, app string) (name string, ok bool)

// Table is the rules table: every rule the daemon listed, and the
// filtered, sorted view of them. It is not safe for concurrent use: the
// window uses it from the UI goroutine only.
type Table struct {
	me       uint32
	admin    bool
	names    AppNamer
	loc      *time.Location
	now      func() time.Time
	today    time.Time // now, when the rows were made
	rows     []Row     // every rule, in the daemon's order
	view     []int     // indices into rows: filtered and sorted
	filter   Filter
	sortCol  Column
	sortDesc bool
}

// Options configure a Table.
type Options struct {
	UID      uint32           // the desktop user: owner of "mine"
	Admin    bool             // the user may change system and others' rules (root)
	AppName  AppNamer         // optional
	Location *time.Location   // for times; nil = time.Local
	Now      func() time.Time // for short times ("10:50" today); nil = time.Now
}

// New makes an empty table sorted by name.
func New(o Options) *Table {
	loc := o.Location
	if loc == nil {
		loc = time.Local
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Table{me: o.UID, admin: o.Admin || o.UID == shared.OwnerSystem, names: o.AppName, loc: loc, now: now, sortCol: ColName}
}

// SetRules replaces the rules (as ListRules returned them).
func (t *Table) SetRules(rules []shared.Rule) {
	t.rows = t.rows[:0]
	t.today = t.now().In(t.loc)
	for _, r := range rules {
		t.rows = append(t.rows, t.row(r))
	}
	t.refresh()
}

// SetFilter sets what the view shows.
func (t *Table) SetFilter(f Filter) {
	t.filter = f
	t.refresh()
}

// Filter returns the current filter.
func (t *Table) Filter() Filter { return t.filter }

// SetSort sorts the view by column c, descending when desc.
func (t *Table) SetSort(c Column, desc bool) {
	if c < 0 || c >= NumColumns {
		return
	}
	t.sortCol, t.sortDesc = c, desc
	t.refresh()
}

// ToggleSort sorts by c: ascending first, then the other way round each
// time the same column is asked for again (a header click).
func (t *Table) ToggleSort(c Column) {
	if c == t.sortCol {
		t.SetSort(c, !t.sortDesc)
		return
	}
	t.SetSort(c, false)
}

// Sort returns the sort column and direction.
func (t *Table) Sort() (Column, bool) { return t.sortCol, t.sortDesc }

// Len is the number of rows in the view.
func (t *Table) Len() int { return len(t.view) }

// Total is the number of rules, filtered or not.
func (t *Table) Total() int { return len(t.rows) }

// Row returns row i of the view; ok is false when i is out of range.
func (t *Table) Row(i int) (Row, bool) {
	if i < 0 || i >= len(t.view) {
		return Row{}, false
	}
	return t.rows[t.view[i]], true
}

// Index returns the view index of rule id, or -1 when the view does not
// show it.
func (t *Table) Index(id string) int {
	for i, k := range t.view {
		if t.rows[k].Rule.ID == id {
			return i
		}
	}
	return -1
}

// Find returns the row of rule id, shown or filtered out.
func (t *Table) Find(id string) (Row, bool) {
	for _, r := range t.rows {
		if r.Rule.ID == id {
			return r, true
		}
	}
	return Row{}, false
}

// Apps returns the distinct App texts of all rules, sorted: the choices of
// the app filter.
func (t *Table) Apps() []string {
	var apps []string
	for _, r := range t.rows {
		apps = append(apps, r.App)
	}
	slices.SortFunc(apps, func(a, b string) int { return cmp.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return slices.Compact(apps)
}

func (t *Table) refresh() {
	t.view = t.view[:0]
	for i := range t.rows {
		if t.matches(&t.rows[i]) {
			t.view = append(t.view, i)
		}
	}
	slices.SortStableFunc(t.view, func(a, b int) int {
		c := compareColumn(&t.rows[a], &t.rows[b], t.sortCol)
		if t.sortDesc {
			c = -c
		}
		if c != 0 {
			return c
		}
		// Ties keep a stable order whatever the daemon's order was.
		return cmp.Compare(t.rows[a].Rule.ID, t.rows[b].Rule.ID)
	})
}

func (t *Table) matches(r *Row) bool {
	f := &t.filter
	switch {
	case f.App != "" && r.App != f.App:
		return false
	case f.Action != "" && r.Rule.Action != f.Action:
		return false
	case f.Owner == OwnerMine && r.Rule.Owner != t.me:
		return false
	case f.Owner == OwnerSystem && r.Rule.Owner != shared.OwnerSystem:
		return false
	case f.Enabled == EnabledOn && !r.Rule.Enabled:
		return false
	case f.Enabled == EnabledOff && r.Rule.Enabled:
		return false
	}
	q := strings.ToLower(strings.TrimSpace(f.Search))
	if q == "" {
		return true
	}
	m := &r.Rule.Match
	for _, s := range []string{r.Rule.ID, r.Rule.Name, r.Rule.Note, r.App, m.Exe, m.Host, r.Remote, r.Port, m.Unit} {
		if strings.Contains(strings.ToLower(s), q) {
			return true
		}
	}
	return false
}

func compareColumn(a, b *Row, c Column) int {
	switch c {
	case ColEnabled:
		return cmpBool(a.Rule.Enabled, b.Rule.Enabled)
	case ColPort:
		// "any" first, then by the low end, then the high end.
		pa, pb := a.Rule.Match.Port, b.Rule.Match.Port
		if c := cmpBool(!pa.IsAny(), !pb.IsAny()); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(pa.Lo, pb.Lo), cmp.Compare(pa.Hi, pb.Hi))
	case ColOwner:
		return cmp.Compare(a.Rule.Owner, b.Rule.Owner)
	case ColHits:
		return cmp.Compare(a.Rule.Hits, b.Rule.Hits)
	case ColLastHit:
		return a.Rule.LastHit.Compare(b.Rule.LastHit)
	}
	return cmp.Compare(strings.ToLower(a.Cell(c)), strings.ToLower(b.Cell(c)))
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

func (t *Table) row(r shared.Rule) Row {
	m := &r.Match
	row := Row{
		Rule:     r,
		Name:     r.Name,
		App:      AppLabel(m.Exe, t.names),
		Remote:   Remote(m),
		Port:     m.Port.String(),
		Proto:    string(m.Proto),
		Action:   string(r.Action),
		Lifetime: t.lifetime(r),
		Owner:    t.owner(r.Owner),
		Hits:     strconv.FormatUint(r.Hits, 10),
		LastHit:  t.timeString(r.LastHit),
	}
	if r.Enabled {
		row.Enabled = "✓"
	}
	if row.Proto == "" {
		row.Proto = string(shared.ProtoAny)
	}
	if m.Direction == shared.DirectionIn {
		row.Remote = "from " + row.Remote
	}
	row.Named = r.Name != ""
	if !row.Named {
		row.Name = Summary(row.App, row.Remote, row.Port, row.Proto)
	}
	row.Editable, row.ReadOnly = t.editable(r)
	row.AdminEditable = !row.Editable && !r.ReadOnly
	row.Toggleable = row.Editable && r.Lifetime != shared.LifetimeProcess
	return row
}

// Summary names an unnamed rule by what it matches, as the table shows
// it: "ssh to any, port 22/tcp". Words, not arrows: Fyne's font has no
// arrow glyph.
func Summary(app, remote, port, proto string) string {
	s := app + " to " + remote
	if strings.HasPrefix(remote, "from ") {
		s = app + " " + remote
	}
	switch {
	case port != "any" && proto != string(shared.ProtoAny):
		s += ", port " + port + "/" + proto
	case port != "any":
		s += ", port " + port
	case proto != string(shared.ProtoAny):
		s += ", " + proto
	}
	return s
}

// editable says whether the desktop user may change r, and why not.
func (t *Table) editable(r shared.Rule) (bool, string) {
	switch {
	case r.ReadOnly:
		src := r.Source
		if src == "" {
			src = "a rules file"
		}
		return false, "read-only: it comes from " + src + " (edit the file instead)"
	case t.admin || r.Owner == t.me:
		return true, ""
	case r.Owner == shared.OwnerSystem:
		return false, "A system rule (it applies to every user): changing it needs an administrator."
	}
	return false, "Another user's rule: changing it needs an administrator."
}

// AppLabel is what the App column shows for an executable: the
// application's name when names knows it, else the executable's base name,
// or "any app" for a rule without one.
func AppLabel(exe string, names AppNamer) string {
	if exe == "" {
		return "any app"
	}
	if names != nil {
		if n, ok := names(exe, ""); ok && n != "" {
			return n
		}
	}
	return path.Base(exe)
}

// Remote is what the Remote column shows: the host, the ip, both, or
// "any".
func Remote(m *shared.Match) string {
	ip := shared.FormatIP(m.IP)
	switch {
	case m.Host != "" && ip != "":
		return m.Host + " (" + ip + ")"
	case m.Host != "":
		return m.Host
	case ip != "":
		return ip
	}
	return "any"
}

func (t *Table) owner(uid uint32) string {
	switch {
	case uid == shared.OwnerSystem:
		return "system"
	case uid == t.me:
		return "me"
	}
	return "uid " + strconv.FormatUint(uint64(uid), 10)
}

func (t *Table) lifetime(r shared.Rule) string {
	switch r.Lifetime {
	case shared.LifetimeUntil:
		return "until " + t.timeString(r.Until)
	case shared.LifetimeProcess:
		if r.PID != 0 {
			return "process " + strconv.Itoa(r.PID)
		}
	}
	return string(r.Lifetime)
}

// timeString is a time as short as it can be read: "10:50" today,
// "21 Nov 10:50" this year, "2025-01-02 10:50" else.
func (t *Table) timeString(tm time.Time) string {
	if tm.IsZero() {
		return "never"
	}
	return ShortTime(tm.In(t.loc), t.today)
}

// ShortTime is tm as short as it can be read against now (in tm's
// location): "10:50" on the same day, "21 Nov 10:50" in the same year,
// "2025-01-02 10:50" else.
func ShortTime(tm, now time.Time) string {
	now = now.In(tm.Location())
	y, m, d := tm.Date()
	ny, nm, nd := now.Date()
	switch {
	case y == ny && m == nm && d == nd:
		return tm.Format("15:04")
	case y == ny:
		return tm.Format("2 Jan 15:04")
	}
	return tm.Format("2006-01-02 15:04")
}

// Details is the selected rule's line under the table: what the columns
// cut short or leave out (its id, full executable path and name, note,
// where it comes from, when it was made) and, when the user cannot change
// it, why.
func Details(r Row) string {
	rule := &r.Rule
	m := &rule.Match
	parts := []string{"Rule " + rule.ID}
	if rule.Name != "" && r.Named {
		parts = append(parts, "“"+rule.Name+"”")
	}
	if m.Exe != "" {
		parts = append(parts, m.Exe)
	}
	if r.Remote != "any" {
		parts = append(parts, r.Remote)
	}
	for _, f := range []struct{ label, v string }{
		{"local port", localPort(m)}, {"cmdline", m.Cmdline}, {"unit", m.Unit}, {"sha256", m.ExeSHA256},
		{"interface", m.Iface}, {"direction", string(m.Direction)},
	} {
		if f.v != "" {
			parts = append(parts, f.label+" "+f.v)
		}
	}
	if rule.Priority != 0 {
		parts = append(parts, "priority "+strconv.Itoa(rule.Priority))
	}
	if rule.Note != "" {
		parts = append(parts, "note: "+rule.Note)
	}
	if rule.Source != "" && rule.Source != "store" {
		parts = append(parts, "from "+rule.Source)
	}
	s := strings.Join(parts, " · ")
	if r.ReadOnly != "" {
		s += "\n" + r.ReadOnly
	}
	return s
}

func localPort(m *shared.Match) string {
	if m.LocalPort.IsAny() {
		return ""
	}
	return m.LocalPort.String()
}
