package tray

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// NoticeInterval is the least time between two notifications about
// connections blocked unasked.
const NoticeInterval = time.Minute

// NoticeLookback is how far back the first read after the tray starts
// looks: connections blocked while the desktop session was starting count,
// yesterday's do not.
const NoticeLookback = 10 * time.Minute

// Notice is one notification to show.
type Notice struct {
	Title, Body string
}

// Blocked gathers the connections of one user that the daemon blocked by
// default because no prompt could be shown (Verdict.Unasked), and turns
// them into at most one coalesced notice per NoticeInterval. It is plain
// Go, not safe for concurrent use; the clock is injected.
type Blocked struct {
	uid      int64
	now      func() time.Time
	name     func(shared.Connection) string
	since    time.Time           // the next read starts here (inclusive)
	seen     map[string]struct{} // entries at or after since already counted
	counts   map[string]int      // by application name, not yet told
	lastSent time.Time
}

// NewBlocked makes a Blocked for uid's connections. name gives the name
// an application is told by (nil: the executable's base name).
func NewBlocked(uid uint32, now func() time.Time, name func(shared.Connection) string) *Blocked {
	if name == nil {
		name = ExeName
	}
	return &Blocked{
		uid: int64(uid), now: now, name: name,
		since:  now().Add(-NoticeLookback),
		seen:   map[string]struct{}{},
		counts: map[string]int{},
	}
}

// Filter is the log filter for the next read: the user's own entries
// since the newest one already read.
func (b *Blocked) Filter() shared.LogFilter {
	uid := uint32(b.uid)
	return shared.LogFilter{Since: b.since, UID: &uid, Limit: 1000}
}

// ExeName names a connection's application by its executable's base name
// (the claimed one when the executable could not be verified).
func ExeName(c shared.Connection) string {
	exe := c.Exe
	if exe == "" {
		exe = c.ExeClaimed
	}
	if exe == "" {
		if c.App != "" {
			return c.App
		}
		return "an unknown program"
	}
	return filepath.Base(exe)
}

// Counts reports whether e is a connection this tray tells its user about:
// theirs, blocked (not allowed, not merely monitored) by the default
// because nobody could be asked.
func (b *Blocked) Counts(e shared.LogEntry) bool {
	v := e.Verdict
	return v.Unasked && !v.Monitor && v.Action != shared.ActionAllow && e.Connection.UID == b.uid
}

// Add takes the entries of one read (any order; entries read before are
// ignored).
func (b *Blocked) Add(entries []shared.LogEntry) {
	newest := b.since
	for _, e := range entries {
		t := e.Connection.Time
		if t.Before(b.since) {
			continue
		}
		k := entryKey(e)
		if _, ok := b.seen[k]; ok {
			continue
		}
		b.seen[k] = struct{}{}
		if t.After(newest) {
			newest = t
		}
		if b.Counts(e) {
			b.counts[b.name(e.Connection)]++
		}
	}
	if newest.After(b.since) {
		b.since = newest
		// Only entries at the new boundary can be read again.
		for k := range b.seen {
			if !strings.HasPrefix(k, keyTime(newest)) {
				delete(b.seen, k)
			}
		}
	}
}

func keyTime(t time.Time) string { return fmt.Sprintf("%d|", t.UnixNano()) }

func entryKey(e shared.LogEntry) string {
	c := e.Connection
	return fmt.Sprintf("%s%d|%d|%s|%s|%d|%s|%d", keyTime(c.Time), c.ID, c.PID, c.Exe, c.RemoteIP, c.RemotePort, c.Proto, c.LocalPort)
}

// Waiting is how many counted connections have not been told yet.
func (b *Blocked) Waiting() int {
	n := 0
	for _, c := range b.counts {
		n += c
	}
	return n
}

// Next returns the notice to show now, if any: there are untold
// connections and the last notice is at least NoticeInterval old. The
// connections it tells of are then forgotten.
func (b *Blocked) Next() (Notice, bool) {
	if len(b.counts) == 0 {
		return Notice{}, false
	}
	now := b.now()
	if !b.lastSent.IsZero() && now.Sub(b.lastSent) < NoticeInterval {
		return Notice{}, false
	}
	n := noticeFor(b.counts)
	b.counts = map[string]int{}
	b.lastSent = now
	return n, true
}

// noticeFor words the notice for the counts by application.
func noticeFor(counts map[string]int) Notice {
	type app struct {
		name string
		n    int
	}
	apps := make([]app, 0, len(counts))
	total := 0
	for name, n := range counts {
		apps = append(apps, app{name, n})
		total += n
	}
	sort.Slice(apps, func(i, j int) bool {
		if apps[i].n != apps[j].n {
			return apps[i].n > apps[j].n
		}
		return apps[i].name < apps[j].name
	})
	title := "Tollgate blocked connections"
	if len(apps) == 1 {
		return Notice{Title: title, Body: fmt.Sprintf("%s of %s %s blocked while Tollgate could not ask you",
			countConns(total), apps[0].name, were(total))}
	}
	const shown = 3
	parts := make([]string, 0, shown+1)
	for i, a := range apps {
		if i == shown {
			parts = append(parts, fmt.Sprintf("%d more", len(apps)-shown))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", a.name, a.n))
	}
	return Notice{Title: title, Body: fmt.Sprintf("%s %s blocked while Tollgate could not ask you: %s",
		countConns(total), were(total), strings.Join(parts, ", "))}
}

func countConns(n int) string {
	if n == 1 {
		return "1 connection"
	}
	return fmt.Sprintf("%d connections", n)
}

func were(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}
