package rulebook

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/shared"
)

func fileRule(id string, exe string) shared.Rule {
	r := rule(shared.ActionAllow, shared.LifetimeForever, exe)
	r.ID, r.ReadOnly, r.Source = id, true, "rules.d/a.toml"
	return r
}

// TestHitsAreKeptBesideTheSet: counted hits show in Get and List, survive
// an update, and never rebuild the rule set.
func TestHitsAreKeptBesideTheSet(t *testing.T) {
	f := newFixture(t, Options{FileRules: []shared.Rule{fileRule("a.toml:x", "/usr/bin/x")}})
	kept, err := f.b.Add(alice, rule(shared.ActionAllow, shared.LifetimeForever, "/usr/bin/curl"))
	if err != nil {
		t.Fatal(err)
	}
	set := f.set
	t1 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	f.b.AddHits(map[string]store.Hit{kept.ID: {Count: 2, Last: t1}, "a.toml:x": {Count: 5, Last: t1}, "gone": {Count: 1, Last: t1}})
	f.b.AddHits(map[string]store.Hit{kept.ID: {Count: 1, Last: t1.Add(-time.Hour)}})
	if f.set != set {
		t.Error("hits rebuilt the rule set")
	}
	got, _ := f.b.Get(kept.ID)
	if got.Hits != 3 || !got.LastHit.Equal(t1) {
		t.Errorf("after hits: %d, %v", got.Hits, got.LastHit)
	}
	if fr, _ := f.b.Get("a.toml:x"); fr.Hits != 0 {
		t.Errorf("a file rule counted hits: %d", fr.Hits)
	}
	for _, r := range f.b.List(alice) {
		if r.ID == kept.ID && r.Hits != 3 {
			t.Errorf("List shows %d hits", r.Hits)
		}
	}
	upd := kept
	upd.Note = "changed"
	if _, err := f.b.Update(alice, kept.ID, upd); err != nil {
		t.Fatal(err)
	}
	f.b.AddHits(map[string]store.Hit{kept.ID: {Count: 1, Last: t1}})
	if got, _ := f.b.Get(kept.ID); got.Hits != 4 || got.Note != "changed" {
		t.Errorf("after update and one more hit: %d hits, note %q", got.Hits, got.Note)
	}
	if err := f.b.Delete(alice, kept.ID); err != nil {
		t.Fatal(err)
	}
	again := rule(shared.ActionAllow, shared.LifetimeForever, "/usr/bin/curl")
	again.ID = kept.ID
	if r, err := f.b.Add(alice, again); err != nil || r.Hits != 0 {
		t.Fatalf("re-added: %+v, %v", r, err)
	}
	if got, _ := f.b.Get(kept.ID); got.Hits != 0 {
		t.Errorf("a deleted rule's hits came back: %d", got.Hits)
	}
}

// TestFileRulesAtStartAndReplaced: file rules given to New are in the first
// set (built once), and SetFileRules replaces them and only them.
func TestFileRulesAtStartAndReplaced(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "t.db"), LockTimeout: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := rule(shared.ActionDeny, shared.LifetimeForever, "/usr/bin/nc")
	s.ID, s.Source = "stored1", "store"
	if err := st.PutRule(s); err != nil {
		t.Fatal(err)
	}
	var sets []*rules.Set
	b, err := New(st, func(s *rules.Set) { sets = append(sets, s) }, log, Options{FileRules: []shared.Rule{fileRule("a.toml:x", "/usr/bin/x"), fileRule("a.toml:y", "/usr/bin/y")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 1 || sets[0].Len() != 3 {
		t.Fatalf("New applied %d sets", len(sets))
	}
	if n := b.Count(alice); n != 3 || n != len(b.List(alice)) {
		t.Errorf("Count = %d, List = %d", n, len(b.List(alice)))
	}
	b.SetFileRules([]shared.Rule{fileRule("b.toml:z", "/usr/bin/z")})
	var ids []string
	last := sets[len(sets)-1]
	for i := range last.Len() {
		ids = append(ids, last.View(i).ID())
	}
	if len(ids) != 2 || ids[0] != "b.toml:z" || ids[1] != "stored1" {
		t.Errorf("after SetFileRules: %v", ids)
	}
	if _, ok := b.Get("a.toml:x"); ok {
		t.Error("an old file rule is still there")
	}
	if err := b.Delete(root, "b.toml:z"); err == nil {
		t.Error("a file rule was deleted")
	}
}
