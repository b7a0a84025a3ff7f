package rulebook

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/shared"
)

type fixture struct {
	b     *Book
	st    *store.Store
	set   *rules.Set
	clock time.Time
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "t.db"), LockTimeout: time.Second, MaxLogEntries: 10}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts.Now = func() time.Time { return f.clock }
	f.b, err = New(st, func(s *rules.Set) { f.set = s }, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var (
	root  = Actor{UID: 0, Admin: true}
	alice = Actor{UID: 1000}
	bob   = Actor{UID: 1001}
)

func rule(action shared.Action, lifetime shared.Lifetime, exe string) shared.Rule {
	return shared.Rule{Action: action, Lifetime: lifetime, Enabled: true, Match: shared.Match{Exe: exe}}
}

func storedIDs(t *testing.T, st *store.Store) []string {
	t.Helper()
	rs, _, err := st.Rules()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	return ids
}

func TestAddKeepsForeverRulesInTheStoreAndOthersInMemory(t *testing.T) {
	f := newFixture(t, Options{})
	forever, err := f.b.Add(alice, rule(shared.ActionAllow, shared.LifetimeForever, "/usr/bin/curl"))
	if err != nil {
		t.Fatal(err)
	}
	session := rule(shared.ActionAllow, shared.LifetimeSession, "/usr/bin/wget")
	session.Session = ":1.42"
	sess, err := f.b.Add(alice, session)
	if err != nil {
		t.Fatal(err)
	}
	if forever.ID == "" || forever.Owner != 1000 || !forever.Created.Equal(f.clock) {
		t.Errorf("kept rule %+v", forever)
	}
	if got := storedIDs(t, f.st); len(got) != 1 || got[0] != forever.ID {
		t.Errorf("stored %v, want only the forever rule", got)
	}
	if f.set.Len() != 2 || f.b.Len() != 2 {
		t.Errorf("set has %d rules, want 2", f.set.Len())
	}
	if n := f.b.EndSession(":1.42"); n != 1 {
		t.Errorf("EndSession removed %d", n)
	}
	if _, ok := f.b.Get(sess.ID); ok || f.set.Len() != 1 {
		t.Error("session rule outlived its session")
	}
}

func TestOwnership(t *testing.T) {
	f := newFixture(t, Options{})
	sys := rule(shared.ActionDeny, shared.LifetimeForever, "/usr/bin/nc")
	sysRule, err := f.b.Add(root, sys)
	if err != nil || sysRule.Owner != shared.OwnerSystem {
		t.Fatalf("root's rule: %+v %v", sysRule, err)
	}
	// A user's rule is theirs, whatever owner it names as system.
	mine, err := f.b.Add(alice, rule(shared.ActionAllow, shared.LifetimeForever, "/usr/bin/nc"))
	if err != nil || mine.Owner != 1000 {
		t.Fatalf("alice's rule: %+v %v", mine, err)
	}
	forBob := rule(shared.ActionAllow, shared.LifetimeForever, "/x")
	forBob.Owner = 1001
	if _, err := f.b.Add(alice, forBob); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("alice making bob's rule: %v", err)
	}
	if err := f.b.Delete(bob, mine.ID); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("bob deleting alice's rule: %v", err)
	}
	if err := f.b.Delete(alice, sysRule.ID); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("alice deleting a system rule: %v", err)
	}
	if _, err := f.b.Update(alice, sysRule.ID, rule(shared.ActionAllow, shared.LifetimeForever, "/usr/bin/nc")); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("alice editing a system rule: %v", err)
	}
	if got := f.b.List(bob); len(got) != 1 || got[0].ID != sysRule.ID {
		t.Errorf("bob sees %+v, want only the system rule", got)
	}
	if got := f.b.List(root); len(got) != 2 {
		t.Errorf("root sees %d rules", len(got))
	}
	if err := f.b.Delete(alice, mine.ID); err != nil {
		t.Errorf("alice deleting her rule: %v", err)
	}
	if err := f.b.Delete(root, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a missing rule: %v", err)
	}
}

func TestFileRulesAreReadOnly(t *testing.T) {
	f := newFixture(t, Options{})
	fr := rule(shared.ActionAllow, shared.LifetimeForever, "/usr/sbin/ntpd")
	fr.ID, fr.ReadOnly, fr.Source = "10-ntp:ntpd", true, "rules.d/10-ntp.toml"
	f.b.SetFileRules([]shared.Rule{fr})
	if f.set.Len() != 1 {
		t.Fatal("file rule not applied")
	}
	if err := f.b.Delete(root, fr.ID); !errors.Is(err, ErrReadOnly) {
		t.Errorf("delete file rule: %v", err)
	}
	if _, err := f.b.Add(root, fr); err == nil {
		t.Error("added a rule with a file rule's id")
	}
}

func TestInvalidAndOnceRulesAreRefused(t *testing.T) {
	f := newFixture(t, Options{})
	bad := rule(shared.ActionAllow, shared.LifetimeForever, "relative/path")
	if _, err := f.b.Add(alice, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid rule: %v", err)
	}
	var fe *shared.FieldError
	if _, err := f.b.Add(alice, bad); !errors.As(err, &fe) || fe.Field != "exe" {
		t.Errorf("error does not name the field: %v", err)
	}
	if _, err := f.b.Add(alice, rule(shared.ActionAllow, shared.LifetimeOnce, "/bin/x")); !errors.Is(err, ErrInvalid) {
		t.Errorf("once rule: %v", err)
	}
	if len(storedIDs(t, f.st)) != 0 || f.b.Len() != 0 {
		t.Error("a refused rule was kept")
	}
}

func TestPerUserLimit(t *testing.T) {
	f := newFixture(t, Options{MaxPerUser: 2})
	for i := 0; i < 2; i++ {
		if _, err := f.b.Add(alice, rule(shared.ActionAllow, shared.LifetimeForever, "/bin/x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.b.Add(alice, rule(shared.ActionAllow, shared.LifetimeForever, "/bin/x")); !errors.Is(err, ErrLimit) {
		t.Errorf("third rule: %v", err)
	}
	if _, err := f.b.Add(bob, rule(shared.ActionAllow, shared.LifetimeForever, "/bin/x")); err != nil {
		t.Errorf("another user's rule: %v", err)
	}
	if _, err := f.b.Import(alice, []shared.Rule{rule(shared.ActionDeny, shared.LifetimeForever, "/bin/y")}); !errors.Is(err, ErrLimit) {
		t.Errorf("import past the limit: %v", err)
	}
}

func TestImportIsIdempotentAndAllOrNothing(t *testing.T) {
	f := newFixture(t, Options{})
	rs := []shared.Rule{
		rule(shared.ActionAllow, shared.LifetimeForever, "/usr/bin/curl"),
		rule(shared.ActionDeny, shared.LifetimeForever, "/usr/bin/nc"),
	}
	if n, err := f.b.Import(root, rs); err != nil || n != 2 {
		t.Fatalf("first import: %d %v", n, err)
	}
	first := storedIDs(t, f.st)
	if n, err := f.b.Import(root, rs); err != nil || n != 0 {
		t.Errorf("second import changed %d rules (%v)", n, err)
	}
	if got := storedIDs(t, f.st); len(got) != 2 || got[0] != first[0] || got[1] != first[1] {
		t.Errorf("stored %v after re-import, want %v", got, first)
	}
	bad := append(rs, rule(shared.ActionAllow, shared.LifetimeForever, "not/absolute"))
	bad[0].Note = "changed"
	if _, err := f.b.Import(root, bad); err == nil {
		t.Fatal("import with a bad rule succeeded")
	}
	for _, r := range f.b.List(root) {
		if r.Note == "changed" {
			t.Error("a failed import changed a rule")
		}
	}
}

func TestPruneEndsProcessAndUntilRules(t *testing.T) {
	f := newFixture(t, Options{})
	p := rule(shared.ActionAllow, shared.LifetimeProcess, "/bin/x")
	p.PID, p.PIDStart = 42, 7
	if _, err := f.b.Add(alice, p); err != nil {
		t.Fatal(err)
	}
	u := rule(shared.ActionAllow, shared.LifetimeUntil, "/bin/y")
	u.Until = f.clock.Add(time.Hour)
	until, err := f.b.Add(alice, u)
	if err != nil {
		t.Fatal(err)
	}
	alive := map[int]bool{42: true}
	isAlive := func(pid int, start uint64) bool { return alive[pid] && start == 7 }
	if n := f.b.Prune(isAlive); n != 0 {
		t.Fatalf("pruned %d live rules", n)
	}
	alive[42] = false
	f.clock = f.clock.Add(2 * time.Hour)
	if n := f.b.Prune(isAlive); n != 2 {
		t.Errorf("pruned %d, want 2", n)
	}
	if ids := storedIDs(t, f.st); len(ids) != 0 {
		t.Errorf("expired until rule %s still stored: %v", until.ID, ids)
	}
}

func TestStoredRulesComeBack(t *testing.T) {
	f := newFixture(t, Options{})
	r, err := f.b.Add(alice, rule(shared.ActionAllow, shared.LifetimeForever, "/usr/bin/curl"))
	if err != nil {
		t.Fatal(err)
	}
	var set *rules.Set
	b2, err := New(f.st, func(s *rules.Set) { set = s }, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := b2.Get(r.ID); !ok || got.Owner != 1000 || set.Len() != 1 {
		t.Errorf("reloaded %+v %v", got, ok)
	}
}

func TestUpdateKeepsIdentityAndMovesBetweenStoreAndMemory(t *testing.T) {
	f := newFixture(t, Options{})
	r, _ := f.b.Add(alice, rule(shared.ActionAllow, shared.LifetimeForever, "/usr/bin/curl"))
	f.clock = f.clock.Add(time.Minute)
	changed := rule(shared.ActionDeny, shared.LifetimeSession, "/usr/bin/curl")
	u, err := f.b.Update(alice, r.ID, changed)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != r.ID || !u.Created.Equal(r.Created) || !u.Updated.Equal(f.clock) || u.Owner != 1000 {
		t.Errorf("updated %+v", u)
	}
	if ids := storedIDs(t, f.st); len(ids) != 0 {
		t.Errorf("session rule still stored: %v", ids)
	}
}

// A client sees a process rule without being able to send its binding
// back (PID, PIDStart and Session are the daemon's); renaming or disabling
// it must still work, and the binding must survive.
func TestUpdateKeepsTheBindingOfProcessAndSessionRules(t *testing.T) {
	f := newFixture(t, Options{})
	p := rule(shared.ActionAllow, shared.LifetimeProcess, "/bin/x")
	p.PID, p.PIDStart = 42, 7
	kept, err := f.b.Add(alice, p)
	if err != nil {
		t.Fatal(err)
	}
	edit := kept
	edit.PID, edit.PIDStart, edit.Session = 0, 0, "" // what a client sends back
	edit.Enabled, edit.Name = false, "renamed"
	u, err := f.b.Update(alice, kept.ID, edit)
	if err != nil {
		t.Fatalf("disabling a process rule: %v", err)
	}
	if u.PID != 42 || u.PIDStart != 7 || u.Enabled || u.Name != "renamed" {
		t.Errorf("updated %+v", u)
	}
	edit.PID, edit.PIDStart = 99, 1 // a client cannot rebind it either
	if u, err := f.b.Update(alice, kept.ID, edit); err != nil || u.PID != 42 || u.PIDStart != 7 {
		t.Errorf("rebinding: %+v %v", u, err)
	}
	s := rule(shared.ActionDeny, shared.LifetimeSession, "/bin/y")
	s.Session = ":1.42"
	ks, err := f.b.Add(alice, s)
	if err != nil {
		t.Fatal(err)
	}
	es := ks
	es.Session, es.Enabled = "", false
	if u, err := f.b.Update(alice, ks.ID, es); err != nil || u.Session != ":1.42" {
		t.Errorf("session rule update: %+v %v", u, err)
	}
}

func TestFileRuleIDsAreReserved(t *testing.T) {
	f := newFixture(t, Options{})
	r := rule(shared.ActionAllow, shared.LifetimeForever, "/bin/x")
	r.ID = "10-ntp:ntpd"
	if _, err := f.b.Add(root, r); !errors.Is(err, ErrInvalid) {
		t.Errorf("Add with a file-style id: %v", err)
	}
	if _, err := f.b.Import(root, []shared.Rule{r}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Import with a file-style id: %v", err)
	}
}

func TestPruneLooksOnlyAtRulesThatCanEnd(t *testing.T) {
	f := newFixture(t, Options{})
	for i := 0; i < 50; i++ {
		if _, err := f.b.Add(root, rule(shared.ActionAllow, shared.LifetimeForever, "/bin/x")); err != nil {
			t.Fatal(err)
		}
	}
	calls := 0
	alive := func(int, uint64) bool { calls++; return true }
	if n := f.b.Prune(alive); n != 0 || calls != 0 {
		t.Errorf("pruned %d, asked about %d processes with no process rule", n, calls)
	}
	p := rule(shared.ActionAllow, shared.LifetimeProcess, "/bin/y")
	p.PID, p.PIDStart = 7, 1
	kept, err := f.b.Add(alice, p)
	if err != nil {
		t.Fatal(err)
	}
	f.b.Prune(alive)
	if calls != 1 {
		t.Errorf("asked about %d processes, want 1", calls)
	}
	// A process rule made forever by an edit is no longer watched.
	if _, err := f.b.Update(alice, kept.ID, rule(shared.ActionAllow, shared.LifetimeForever, "/bin/y")); err != nil {
		t.Fatal(err)
	}
	calls = 0
	f.b.Prune(alive)
	if calls != 0 {
		t.Errorf("an edited rule is still watched (%d calls)", calls)
	}
}

// Paging with every limit from 1 up visits exactly what List returns, in
// its order, for each actor, with file rules among the stored ones.
func TestPageWalksWhatListReturns(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.SetFileRules([]shared.Rule{
		{ID: "a.toml:1", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true, Match: shared.Match{Exe: "/f1"}},
		{ID: "z.toml:2", Action: shared.ActionDeny, Lifetime: shared.LifetimeForever, Enabled: true, Match: shared.Match{Exe: "/f2"}},
	})
	for i := range 7 {
		for _, a := range []Actor{root, alice, bob} {
			if _, err := f.b.Add(a, rule(shared.ActionAllow, shared.LifetimeForever, fmt.Sprintf("/bin/%d-%d", a.UID, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, a := range []Actor{root, alice, bob, {UID: 4242}} {
		want := f.b.List(a)
		for limit := 1; limit <= len(want)+2; limit++ {
			var got []shared.Rule
			after, pages := "", 0
			for {
				page, more := f.b.Page(a, after, limit)
				pages++
				if len(page) > limit || (more && len(page) != limit) {
					t.Fatalf("uid %d limit %d: page of %d, more %v", a.UID, limit, len(page), more)
				}
				got = append(got, page...)
				if !more {
					break
				}
				after = page[len(page)-1].ID
			}
			if len(got) != len(want) {
				t.Fatalf("uid %d limit %d: paged %d rules, List %d", a.UID, limit, len(got), len(want))
			}
			for i := range want {
				if got[i].ID != want[i].ID || got[i].Match.Exe != want[i].Match.Exe {
					t.Fatalf("uid %d limit %d: rule %d is %s, List has %s", a.UID, limit, i, got[i].ID, want[i].ID)
				}
			}
			if wantPages := max(1, (len(want)+limit-1)/limit); pages != wantPages {
				t.Errorf("uid %d limit %d: %d pages for %d rules", a.UID, limit, pages, len(want))
			}
		}
	}
	// After the last ID: nothing, and no more.
	all := f.b.List(root)
	if page, more := f.b.Page(root, all[len(all)-1].ID, 10); len(page) != 0 || more {
		t.Errorf("after the last: %d rules, more %v", len(page), more)
	}
	// Not visible to alice: bob's rules never appear in her pages.
	page, _ := f.b.Page(alice, "", 1000)
	for _, r := range page {
		if r.Owner != alice.UID && r.Owner != shared.OwnerSystem {
			t.Errorf("alice's page holds uid %d's rule %s", r.Owner, r.ID)
		}
	}
}
