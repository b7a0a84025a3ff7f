package rulebook

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/shared"
)

// BenchmarkNew100k is the rule book's part of the daemon's start-up with
// 100k stored rules (a mix of exe, host, CIDR and port rules): read and
// decode every record, build the one rule set.
// Run: go test -run '^$' -bench New100k -benchmem -benchtime 3x ./daemon/rulebook/
// store100k is a store holding 100,000 varied forever rules.
func store100k(b *testing.B) (*store.Store, *slog.Logger) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	path := filepath.Join(b.TempDir(), "t.db")
	st, err := store.Open(store.Options{Path: path}, log)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	rs := make([]shared.Rule, 100_000)
	for i := range rs {
		r := shared.Rule{ID: fmt.Sprintf("i-%016x", uint64(i)*0x9E3779B97F4A7C15), Name: fmt.Sprintf("r%d", i),
			Lifetime: shared.LifetimeForever, Enabled: true, Source: "store", Created: now, Updated: now, Action: shared.ActionAllow}
		switch i % 4 {
		case 0:
			r.Match = shared.Match{Exe: fmt.Sprintf("/usr/lib/app%d/bin/app%d", i, i), Proto: shared.ProtoTCP, Port: shared.PortRange{Lo: 443, Hi: 443}}
		case 1:
			r.Action, r.Match = shared.ActionDeny, shared.Match{Host: fmt.Sprintf("*.svc%d.example.net", i)}
		case 2:
			r.Match = shared.Match{Exe: fmt.Sprintf("/home/*/.local/bin/tool%d", i)}
		case 3:
			r.Action, r.Match = shared.ActionReject, shared.Match{Exe: fmt.Sprintf("/usr/bin/daemon%d", i), Port: shared.PortRange{Lo: 1000, Hi: 1100}}
		}
		rs[i] = r
	}
	if err := st.PutRules(rs); err != nil {
		b.Fatal(err)
	}
	return st, log
}

func BenchmarkNew100k(b *testing.B) {
	st, log := store100k(b)
	defer st.Close()
	var err error
	b.ReportAllocs()
	var book *Book
	for b.Loop() {
		var set *rules.Set
		book = nil
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		if book, err = New(st, func(s *rules.Set) { set = s }, log, Options{}); err != nil {
			b.Fatal(err)
		}
		if set.Len() != 100_000 {
			b.Fatal(set.Len())
		}
		// What the daemon keeps: the heap the book holds once loading's
		// garbage is collected.
		b.StopTimer()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/100_000, "kept-B/rule")
		b.StartTimer()
	}
	runtime.KeepAlive(book)
}

// BenchmarkPage100k pages through 100,000 rules 1,000 at a time (what
// ListRulesPage does for `tollgate rules list` and the rules window).
func BenchmarkPage100k(b *testing.B) {
	st, log := store100k(b)
	defer st.Close()
	book, err := New(st, func(*rules.Set) {}, log, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	pages := 0
	for b.Loop() {
		n, after := 0, ""
		for {
			page, more := book.Page(Actor{UID: 0, Admin: true}, after, 1000)
			n += len(page)
			pages++
			if !more {
				break
			}
			after = page[len(page)-1].ID
		}
		if n != 100_000 {
			b.Fatal(n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pages)/1e6, "ms/page")
}
