package tray

import (
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// clock is a settable time for tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }
func unasked(id uint64, uid int64, exe string, at time.Time, a shared.Action) shared.LogEntry {
	return shared.LogEntry{
		Connection: shared.Connection{ID: id, UID: uid, Exe: exe, Time: at, RemotePort: 443, Proto: shared.ProtoTCP},
		Verdict:    shared.Verdict{Action: a, Unasked: true},
	}
}

func TestBlockedCounts(t *testing.T) {
	c := newClock()
	b := NewBlocked(1000, c.now, nil)
	base := unasked(1, 1000, "/usr/bin/firefox", c.t, shared.ActionDeny)
	tests := []struct {
		name string
		edit func(*shared.LogEntry)
		want bool
	}{
		{"denied unasked", func(*shared.LogEntry) {}, true},
		{"rejected unasked", func(e *shared.LogEntry) { e.Verdict.Action = shared.ActionReject }, true},
		{"allowed unasked (default allow)", func(e *shared.LogEntry) { e.Verdict.Action = shared.ActionAllow }, false},
		{"monitor mode: nothing was blocked", func(e *shared.LogEntry) { e.Verdict.Monitor = true }, false},
		{"asked (a rule or an answer decided)", func(e *shared.LogEntry) { e.Verdict.Unasked = false }, false},
		{"another user's", func(e *shared.LogEntry) { e.Connection.UID = 0 }, false},
		{"unknown uid", func(e *shared.LogEntry) { e.Connection.UID = -1 }, false},
	}
	for _, tt := range tests {
		e := base
		tt.edit(&e)
		if got := b.Counts(e); got != tt.want {
			t.Errorf("%s: Counts = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBlockedCoalescesAndRateLimits(t *testing.T) {
	c := newClock()
	b := NewBlocked(1000, c.now, nil)
	if f := b.Filter(); !f.Since.Equal(c.t.Add(-NoticeLookback)) || f.UID == nil || *f.UID != 1000 {
		t.Fatalf("first filter = %+v", f)
	}
	if _, ok := b.Next(); ok {
		t.Fatal("a notice with nothing blocked")
	}
	t0 := c.t.Add(-time.Minute)
	var es []shared.LogEntry
	for i := range 5 {
		es = append(es, unasked(uint64(i+1), 1000, "/usr/lib/firefox/firefox", t0.Add(time.Duration(i)*time.Second), shared.ActionDeny))
	}
	es = append(es,
		unasked(10, 1000, "/usr/bin/curl", t0, shared.ActionAllow),                       // allowed: not told
		unasked(11, 0, "/usr/sbin/ntpd", t0, shared.ActionDeny),                          // root's: not told
		unasked(12, 1000, "/usr/bin/old", c.t.Add(-2*NoticeLookback), shared.ActionDeny), // before the lookback
	)
	b.Add(es)
	n, ok := b.Next()
	if !ok {
		t.Fatal("no notice")
	}
	if want := "5 connections of firefox were blocked while Tollgate could not ask you"; n.Body != want {
		t.Errorf("body = %q, want %q", n.Body, want)
	}
	if n.Title == "" {
		t.Error("no title")
	}
	if f := b.Filter(); !f.Since.Equal(t0.Add(4 * time.Second)) {
		t.Errorf("next read since %v, want the newest entry's time %v", f.Since, t0.Add(4*time.Second))
	}

	// The same entries read again (the boundary is inclusive) count once.
	b.Add(es)
	c.advance(2 * NoticeInterval)
	if n, ok := b.Next(); ok {
		t.Fatalf("entries read twice told again: %+v", n)
	}

	// Within a minute of a notice: held back, then told together.
	b.Add([]shared.LogEntry{unasked(20, 1000, "/usr/bin/curl", c.t, shared.ActionReject)})
	if _, ok := b.Next(); !ok {
		t.Fatal("first notice after a quiet minute held back")
	}
	c.advance(10 * time.Second)
	b.Add([]shared.LogEntry{unasked(21, 1000, "/usr/bin/curl", c.t, shared.ActionDeny)})
	c.advance(10 * time.Second)
	b.Add([]shared.LogEntry{
		unasked(22, 1000, "/usr/bin/wget", c.t, shared.ActionDeny),
		unasked(23, 1000, "/usr/bin/curl", c.t, shared.ActionDeny),
	})
	if n, ok := b.Next(); ok {
		t.Fatalf("second notice within %v: %+v", NoticeInterval, n)
	}
	if b.Waiting() != 3 {
		t.Errorf("Waiting = %d, want 3", b.Waiting())
	}
	c.advance(NoticeInterval - 20*time.Second)
	n, ok = b.Next()
	if !ok {
		t.Fatal("held-back connections never told")
	}
	if want := "3 connections were blocked while Tollgate could not ask you: curl (2), wget (1)"; n.Body != want {
		t.Errorf("body = %q, want %q", n.Body, want)
	}
	if b.Waiting() != 0 {
		t.Errorf("Waiting after the notice = %d", b.Waiting())
	}
}

func TestBlockedWording(t *testing.T) {
	tests := []struct {
		counts map[string]int
		want   string
	}{
		{map[string]int{"curl": 1}, "1 connection of curl was blocked while Tollgate could not ask you"},
		{map[string]int{"a": 1, "b": 4, "c": 2, "d": 2, "e": 1}, "10 connections were blocked while Tollgate could not ask you: b (4), c (2), d (2), 2 more"},
	}
	for _, tt := range tests {
		if got := noticeFor(tt.counts).Body; got != tt.want {
			t.Errorf("noticeFor(%v) = %q, want %q", tt.counts, got, tt.want)
		}
	}
}

func TestExeName(t *testing.T) {
	tests := []struct {
		c    shared.Connection
		want string
	}{
		{shared.Connection{Exe: "/usr/bin/curl"}, "curl"},
		{shared.Connection{ExeClaimed: "/tmp/x/evil"}, "evil"},
		{shared.Connection{App: "flatpak:org.mozilla.firefox"}, "flatpak:org.mozilla.firefox"},
		{shared.Connection{}, "an unknown program"},
	}
	for _, tt := range tests {
		if got := ExeName(tt.c); got != tt.want {
			t.Errorf("ExeName(%+v) = %q, want %q", tt.c, got, tt.want)
		}
	}
}
