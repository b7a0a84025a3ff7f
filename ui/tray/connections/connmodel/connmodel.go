// Package connmodel is the view-model of the tray's connections window:
// the recent connections read from the daemon's log (merged across polls,
// de-duplicated, bounded), what each column shows, the app and verdict
// filters, and the rule "Make rule…" proposes for a connection.
//
// It owns how logged connections are presented. It is plain Go: it must
// not import Fyne, D-Bus or the daemon, and it never talks to the daemon.
package connmodel

import (
	"cmp"
	"maps"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tollgate-fw/tollgate/shared"
)

// Column is a column of the connections table.
type Column int

// The columns, in display order.
const (
	ColTime Column = iota
	ColApp
	ColExe
	ColRemote
	ColProto
	ColDirection
	ColVerdict
	ColRule
	ColMarkers
	NumColumns
)

var columnTitles = [NumColumns]string{"Time", "App", "Executable", "Remote", "Proto", "Dir", "Verdict", "Rule", "Prompt"}

// Title is the column's header text.
func (c Column) Title() string {
	if c < 0 || c >= NumColumns {
		return ""
	}
	return columnTitles[c]
}

// Markers of how a connection was decided (the Prompt column).
const (
	MarkAnswered = "answered"  // an agent's (or admin's) answer decided it
	MarkNoAnswer = "no answer" // held while an agent was asked; the prompt timed out and the default applied
	MarkUnasked  = "not asked" // the default applied because nobody could be asked
	MarkMonitor  = "monitor"   // monitor mode: the verdict is what would have happened; it was allowed
)

// Markers says how v came about: MarkUnasked; MarkAnswered when a user's
// agent answered the prompt (shared.Verdict.Answered, set by the daemon's
// Answer call); MarkNoAnswer when the default applied after a prompt (the
// default without a rule, neither unasked nor answered); plus MarkMonitor
// in monitor mode. Nothing for a rule's verdict.
func Markers(v shared.Verdict) []string {
	var m []string
	switch {
	case v.Unasked:
		m = append(m, MarkUnasked)
	case v.Answered:
		m = append(m, MarkAnswered)
	case v.RuleID == "":
		m = append(m, MarkNoAnswer)
	}
	if v.Monitor {
		m = append(m, MarkMonitor)
	}
	return m
}

// AppNamer names the application of an executable path and app id
// ("flatpak:<id>", "snap:<name>" or ""); ok is false when it does not know
// it. A desktop-entry index fits here.
type AppNamer func(exe, app string) (name string, ok bool)

// Row is one connection as the table shows it.
type Row struct {
	Entry shared.LogEntry

	// Column texts.
	Time, App, Exe, Remote, Proto, Direction, Verdict, Rule, Markers string
}

// Cell is the text of column c.
func (r *Row) Cell(c Column) string {
	switch c {
	case ColTime:
		return r.Time
	case ColApp:
		return r.App
	case ColExe:
		return r.Exe
	case ColRemote:
		return r.Remote
	case ColProto:
		return r.Proto
	case ColDirection:
		return r.Direction
	case ColVerdict:
		return r.Verdict
	case ColRule:
		return r.Rule
	case ColMarkers:
		return r.Markers
	}
	return ""
}

// Key identifies a connection across polls.
type Key struct {
	ID uint64
	// For entries without an id (a daemon that does not number them):
	// the connection's time and ends.
	Time          int64
	Remote, Local netip.AddrPort
	PID           int
}

// KeyOf returns e's key.
func KeyOf(e shared.LogEntry) Key {
	c := &e.Connection
	if c.ID != 0 {
		return Key{ID: c.ID}
	}
	return Key{Time: c.Time.UnixNano(), Remote: netip.AddrPortFrom(c.RemoteIP, c.RemotePort),
		Local: netip.AddrPortFrom(c.LocalIP, c.LocalPort), PID: c.PID}
}

// Filter selects what the table shows; the zero Filter shows all.
type Filter struct {
	App     string        // only rows whose App column is this; "" = any
	Verdict shared.Action // only this verdict action; "" = any
}

// Options configure a Log.
type Options struct {
	Max      int // rows kept, newest; 0 = DefaultMax
	AppName  AppNamer
	Location *time.Location   // nil = time.Local
	Now      func() time.Time // for short times ("10:50:02" today); nil = time.Now
}

// DefaultMax is how many connections a Log keeps by default.
const DefaultMax = 5000

// Log is the recent connections, newest first. It is not safe for
// concurrent use: the window uses it from the UI goroutine only.
type Log struct {
	max    int
	names  AppNamer
	loc    *time.Location
	now    func() time.Time
	rules  map[string]string // rule names by id
	rows   []Row             // newest first
	keys   map[Key]struct{}
	filter Filter
	view   []int
}

// New makes an empty log.
func New(o Options) *Log {
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Log{max: o.Max, names: o.AppName, loc: o.Location, now: o.Now, keys: map[Key]struct{}{}}
}

// Add merges entries (in any order) into the log: connections seen before
// are skipped, the oldest beyond the bound are dropped. It returns how
// many were new.
func (l *Log) Add(entries []shared.LogEntry) int {
	n := 0
	now := l.now()
	for _, e := range entries {
		k := KeyOf(e)
		if _, ok := l.keys[k]; ok {
			continue
		}
		l.keys[k] = struct{}{}
		l.rows = append(l.rows, l.row(e, now))
		n++
	}
	if n == 0 {
		return 0
	}
	slices.SortStableFunc(l.rows, func(a, b Row) int {
		ca, cb := &a.Entry.Connection, &b.Entry.Connection
		return cmp.Or(cb.Time.Compare(ca.Time), cmp.Compare(cb.ID, ca.ID))
	})
	if len(l.rows) > l.max {
		for _, r := range l.rows[l.max:] {
			delete(l.keys, KeyOf(r.Entry))
		}
		clear(l.rows[l.max:])
		l.rows = l.rows[:l.max]
	}
	l.refresh()
	return n
}

// Newest is the time of the newest connection kept (zero when empty): the
// Since of the next poll.
func (l *Log) Newest() time.Time {
	if len(l.rows) == 0 {
		return time.Time{}
	}
	return l.rows[0].Entry.Connection.Time
}

// SetFilter sets what the view shows.
func (l *Log) SetFilter(f Filter) {
	l.filter = f
	l.refresh()
}

// Len is the number of rows in the view.
func (l *Log) Len() int { return len(l.view) }

// Total is the number of connections kept, filtered or not.
func (l *Log) Total() int { return len(l.rows) }

// Row returns row i of the view.
func (l *Log) Row(i int) (Row, bool) {
	if i < 0 || i >= len(l.view) {
		return Row{}, false
	}
	return l.rows[l.view[i]], true
}

// Index returns the view index of the connection with key k, or -1.
func (l *Log) Index(k Key) int {
	for i, j := range l.view {
		if KeyOf(l.rows[j].Entry) == k {
			return i
		}
	}
	return -1
}

// Apps returns the distinct App texts of the kept connections, sorted: the
// choices of the app filter.
func (l *Log) Apps() []string {
	var apps []string
	for _, r := range l.rows {
		apps = append(apps, r.App)
	}
	slices.SortFunc(apps, func(a, b string) int { return cmp.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return slices.Compact(apps)
}

func (l *Log) refresh() {
	l.view = l.view[:0]
	for i := range l.rows {
		r := &l.rows[i]
		if l.filter.App != "" && r.App != l.filter.App {
			continue
		}
		if l.filter.Verdict != "" && r.Entry.Verdict.Action != l.filter.Verdict {
			continue
		}
		l.view = append(l.view, i)
	}
}

func (l *Log) row(e shared.LogEntry, now time.Time) Row {
	c := &e.Connection
	v := &e.Verdict
	r := Row{
		Entry:     e,
		Time:      l.timeString(c.Time, now),
		App:       AppLabel(*c, l.names),
		Exe:       ShortPath(c.Exe, maxExeRunes),
		Remote:    Remote(*c),
		Proto:     string(c.Proto),
		Direction: string(c.Direction),
		Verdict:   string(v.Action),
		Rule:      v.RuleID,
		Markers:   strings.Join(Markers(*v), ", "),
	}
	if r.Exe == "" && c.ExeClaimed != "" {
		r.Exe = ShortPath(c.ExeClaimed, maxExeRunes) + " (unverified)"
	}
	r.Rule = l.ruleText(*v)
	if v.Monitor {
		r.Verdict += " (allowed)"
	}
	return r
}

// ruleText is the Rule column: the deciding rule's name (its id while
// the name is not known), "answer" for an answer that made no rule (once),
// else "default".
func (l *Log) ruleText(v shared.Verdict) string {
	switch {
	case v.RuleID != "":
		if n := l.rules[v.RuleID]; n != "" {
			return n
		}
		return v.RuleID
	case v.Answered:
		return "answer (once)"
	}
	return "default"
}

// AddRuleNames names rules the Rule column shows (by id), keeping the
// names given before. It reports whether a row changed.
func (l *Log) AddRuleNames(names map[string]string) bool {
	if l.rules == nil {
		l.rules = map[string]string{}
	}
	maps.Copy(l.rules, names)
	changed := false
	for i := range l.rows {
		r := &l.rows[i]
		if t := l.ruleText(r.Entry.Verdict); t != r.Rule {
			r.Rule, changed = t, true
		}
	}
	return changed
}

// maxExeRunes is how long the Executable column's text may be: longer
// paths lose their middle (the file name is what tells them apart).
const maxExeRunes = 28

// ShortPath shortens p to at most n runes by cutting out the middle of its
// directory: "/tmp/tollgate-bus-4255/probe" -> "/tmp/tollg…/probe". The
// file name is kept whole.
func ShortPath(p string, n int) string {
	if utf8.RuneCountInString(p) <= n {
		return p
	}
	dir, file := path.Split(p)
	keep := n - utf8.RuneCountInString(file) - 1 // 1 for "…"
	if keep < 2 {
		return "…/" + file
	}
	d := []rune(dir)
	head := keep / 2
	tail := keep - head
	return string(d[:head]) + "…" + string(d[len(d)-tail:]) + file
}

// timeString is the Time column: "10:50:02" for today (now's day where
// the time is shown), "21 Nov 10:50" this year, "2025-01-02 10:50" else.
func (l *Log) timeString(t, now time.Time) string {
	if t.IsZero() {
		return "?"
	}
	t, now = t.In(l.loc), now.In(l.loc)
	y, m, d := t.Date()
	ny, nm, nd := now.Date()
	switch {
	case y == ny && m == nm && d == nd:
		return t.Format("15:04:05")
	case y == ny:
		return t.Format("2 Jan 15:04")
	}
	return t.Format("2006-01-02 15:04")
}

// AppLabel names a connection's application: its desktop name when names
// knows it, else the executable's base name, else who it belongs to.
func AppLabel(c shared.Connection, names AppNamer) string {
	if names != nil && (c.Exe != "" || c.App != "") {
		if n, ok := names(c.Exe, c.App); ok && n != "" {
			return n
		}
	}
	switch {
	case c.Exe != "":
		return path.Base(c.Exe)
	case c.ExeClaimed != "":
		return path.Base(c.ExeClaimed) + "?"
	case c.User != "":
		return "(" + c.User + ")"
	case c.UID >= 0:
		return "(uid " + strconv.FormatInt(c.UID, 10) + ")"
	}
	return "(unknown)"
}

// Remote is a connection's remote end: "host:port (ip)" when it has a
// name, else "ip:port"; a name another user's lookup gave is marked.
func Remote(c shared.Connection) string {
	ip := "?"
	if c.RemoteIP.IsValid() {
		ip = c.RemoteIP.String()
	}
	port := ""
	if c.RemotePort != 0 {
		port = ":" + strconv.Itoa(int(c.RemotePort))
	}
	if len(c.Hosts) > 0 {
		s := c.Hosts[0] + port + " (" + ip + ")"
		if c.HostSource == shared.HostFromAny {
			s += " [name not trusted]"
		}
		return s
	}
	if port != "" && c.RemoteIP.Is6() {
		return "[" + ip + "]" + port
	}
	return ip + port
}

// RuleFor is the rule "Make rule…" proposes for a logged connection: allow,
// forever, its executable (when verified), its direction and protocol, the
// remote host name when the connection's own process looked it up (else the
// remote IP), and the remote port (the local port for an inbound
// connection: the remote one is the peer's ephemeral port).
func RuleFor(e shared.LogEntry, names AppNamer) shared.Rule {
	c := &e.Connection
	r := shared.Rule{
		Action:   shared.ActionAllow,
		Lifetime: shared.LifetimeForever,
		Enabled:  true,
	}
	m := &r.Match
	m.Exe = c.Exe // never the unverified ExeClaimed
	m.Direction = c.Direction
	if c.Proto != shared.ProtoAny {
		m.Proto = c.Proto
	}
	target := ""
	switch {
	case len(c.Hosts) > 0 && c.Hosts[0] != "" && c.HostSource == shared.HostFromProcess:
		m.Host = c.Hosts[0]
		target = m.Host
	case c.RemoteIP.IsValid():
		if p, err := shared.ParseIP(c.RemoteIP.WithZone("").String()); err == nil {
			m.IP = p
			target = shared.FormatIP(p)
		}
	}
	if c.Direction == shared.DirectionIn {
		if c.LocalPort != 0 {
			m.LocalPort = shared.PortRange{Lo: c.LocalPort, Hi: c.LocalPort}
		}
	} else if c.RemotePort != 0 {
		m.Port = shared.PortRange{Lo: c.RemotePort, Hi: c.RemotePort}
	}
	app := "any app"
	if c.Exe != "" {
		app = AppLabel(*c, names)
	}
	switch {
	case c.Direction == shared.DirectionIn && !m.LocalPort.IsAny():
		r.Name = app + " from " + orAny(target) + " on port " + m.LocalPort.String()
	case !m.Port.IsAny():
		r.Name = app + " to " + orAny(target) + " port " + m.Port.String()
	default:
		r.Name = app + " to " + orAny(target)
	}
	r.Name = truncate(r.Name, shared.MaxNameLen)
	return r
}

// truncate cuts s to at most n bytes at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func orAny(s string) string {
	if s == "" {
		return "anywhere"
	}
	return s
}
