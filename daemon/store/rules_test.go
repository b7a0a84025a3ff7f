package store

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tollgate-fw/tollgate/shared"
)

func assertRules(t *testing.T, got []shared.Rule, want ...shared.Rule) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rules, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("rule %d differs:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestRuleRoundTripEveryField(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path})
	want := fullRule("firefox-web")
	if err := s.PutRule(want); err != nil {
		t.Fatal(err)
	}
	rules, bad, err := s.Rules()
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	assertRules(t, rules, want)

	// And from the file, by a new process.
	s.Close()
	s = openT(t, Options{Path: path})
	rules, _, err = s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	assertRules(t, rules, want)
}

func TestPutRuleReplacesAndDeleteRemoves(t *testing.T) {
	s := openT(t, Options{Path: dbPath(t)})
	a, b := smallRule("a"), smallRule("b")
	for _, r := range []shared.Rule{b, a} {
		if err := s.PutRule(r); err != nil {
			t.Fatal(err)
		}
	}
	a.Action, a.Note = shared.ActionDeny, "changed"
	if err := s.PutRule(a); err != nil {
		t.Fatal(err)
	}
	rules, _, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	assertRules(t, rules, a, b) // ID order, a replaced

	if err := s.DeleteRule("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRule("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteRule: %v, want ErrNotFound", err)
	}
	if err := s.DeleteRule(""); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteRule(\"\"): %v, want ErrNotFound", err)
	}
	rules, _, _ = s.Rules()
	assertRules(t, rules, b)
}

func TestPutRuleRefusesEmptyID(t *testing.T) {
	s := openT(t, Options{Path: dbPath(t)})
	if err := s.PutRule(smallRule("")); !errors.Is(err, ErrInvalidRule) {
		t.Fatalf("PutRule(empty ID): %v, want ErrInvalidRule", err)
	}
	rules, _, _ := s.Rules()
	assertRules(t, rules)
}

func TestPutRulesIsAllOrNothing(t *testing.T) {
	s := openT(t, Options{Path: dbPath(t)})
	kept := smallRule("kept")
	if err := s.PutRule(kept); err != nil {
		t.Fatal(err)
	}
	replaced := smallRule("kept")
	replaced.Note = "must not be written"
	cases := map[string]struct {
		rules []shared.Rule
		is    error
	}{
		// Caught before the transaction starts.
		"empty ID":     {rules: []shared.Rule{replaced, smallRule("n1"), smallRule("")}, is: ErrInvalidRule},
		"duplicate ID": {rules: []shared.Rule{smallRule("n1"), replaced, smallRule("n1")}, is: ErrInvalidRule},
		// bbolt refuses the third Put inside the transaction, after two
		// succeeded: the rollback must take them back.
		"key too large": {rules: []shared.Rule{replaced, smallRule("n1"), smallRule(strings.Repeat("x", bbolt.MaxKeySize+1))}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := s.PutRules(c.rules)
			if err == nil {
				t.Fatal("PutRules succeeded")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("PutRules: %v, want %v", err, c.is)
			}
			rules, _, err := s.Rules()
			if err != nil {
				t.Fatal(err)
			}
			assertRules(t, rules, kept)
		})
	}
	if err := s.PutRules([]shared.Rule{replaced, smallRule("n1")}); err != nil {
		t.Fatal(err)
	}
	rules, _, _ := s.Rules()
	assertRules(t, rules, replaced, smallRule("n1"))
}

func TestUpdateHits(t *testing.T) {
	s := openT(t, Options{Path: dbPath(t)})
	a := smallRule("a")
	a.Hits, a.LastHit = 5, time.Date(2025, 5, 5, 0, 0, 0, 0, time.UTC)
	if err := s.PutRules([]shared.Rule{a, smallRule("b")}); err != nil {
		t.Fatal(err)
	}
	earlier, later := a.LastHit.Add(-time.Hour), a.LastHit.Add(time.Hour)
	err := s.UpdateHits(map[string]Hit{
		"a":       {Count: 2, Last: earlier}, // count adds, LastHit stays
		"b":       {Count: 1, Last: later},
		"unknown": {Count: 9, Last: later}, // not stored: ignored
		"":        {Count: 9, Last: later},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateHits(map[string]Hit{"a": {Count: 1, Last: later}}); err != nil {
		t.Fatal(err)
	}
	rules, _, _ := s.Rules()
	wantA, wantB := a, smallRule("b")
	wantA.Hits, wantA.LastHit = 8, later
	wantB.Hits, wantB.LastHit = 1, later
	assertRules(t, rules, wantA, wantB)
}

func TestBadRecordsAreReportedNotDropped(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path})
	if err := s.PutRules([]shared.Rule{smallRule("a"), smallRule("c")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	otherID, _ := encodeRule(smallRule("somewhere-else"))
	rawUpdate(t, path, nil, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRules)
		if err := b.Put([]byte("b-garbage"), []byte(`{"ID": "b-garbage", "Action": `)); err != nil {
			return err
		}
		return b.Put([]byte("b-moved"), otherID)
	})

	s = openT(t, Options{Path: path})
	rules, bad, err := s.Rules()
	if err != nil {
		t.Fatalf("Rules: %v", err)
	}
	assertRules(t, rules, smallRule("a"), smallRule("c"))
	if len(bad) != 2 || bad[0].Key != "b-garbage" || bad[1].Key != "b-moved" {
		t.Fatalf("bad records %v", bad)
	}
	if !strings.Contains(bad[1].String(), "somewhere-else") {
		t.Errorf("bad record says %q", bad[1])
	}
	// Hit updates leave them alone; they stay until deleted.
	if err := s.UpdateHits(map[string]Hit{"b-garbage": {Count: 1}, "a": {Count: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, bad, _ = s.Rules(); len(bad) != 2 {
		t.Fatalf("bad records vanished: %v", bad)
	}
	if err := s.DeleteRule("b-garbage"); err != nil {
		t.Fatal(err)
	}
	if _, bad, _ = s.Rules(); len(bad) != 1 || bad[0].Key != "b-moved" {
		t.Fatalf("after delete: %v", bad)
	}
}

func TestRulesDecodesManyInParallelInOrder(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path})
	const n = 3000
	want := make([]shared.Rule, n)
	for i := range want {
		want[i] = smallRule(fmt.Sprintf("rule-%05d", i))
	}
	if err := s.PutRules(want); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawUpdate(t, path, nil, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRules).Put([]byte("rule-01500x"), []byte("not json"))
	})
	s = openT(t, Options{Path: path})
	got, bad, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	assertRules(t, got, want...)
	if len(bad) != 1 || bad[0].Key != "rule-01500x" {
		t.Fatalf("bad %v", bad)
	}
}

// TestRecordsOfEarlierBuildsStillLoad: records as earlier builds wrote them
// (json.Marshal of the field map: sorted keys, integers, escapes) load to
// the same rules, whichever decoding path they take; a record with data
// after the object is a bad record, as it was.
func TestRecordsOfEarlierBuildsStillLoad(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path})
	s.Close()
	recs := map[string]string{
		"plain":    `{"action":"allow","created":"2026-01-02T03:04:05.123456789Z","enabled":true,"exe":"/usr/lib/app1/bin/app1","id":"plain","lifetime":"forever","name":"r1","port":"443","proto":"tcp","source":"store","updated":"2026-01-02T03:04:05Z"}`,
		"escaped":  `{"action":"deny","enabled":false,"hits":12,"host":"*.example.org","id":"escaped","last_hit":"2026-02-01T00:00:00Z","lifetime":"until","note":"\u003cb\u003e \"quoted\"\n","owner":1000,"priority":-3,"uid":1000,"until":"2030-01-01T00:00:00Z"}`,
		"trailing": `{"action":"allow","id":"trailing"} {}`,
	}
	rawUpdate(t, path, nil, func(tx *bbolt.Tx) error {
		for k, v := range recs {
			if err := tx.Bucket(bucketRules).Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	s = openT(t, Options{Path: path})
	rules, bad, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || bad[0].Key != "trailing" {
		t.Errorf("bad records: %v", bad)
	}
	uid := uint32(1000)
	want := []shared.Rule{
		{ID: "escaped", Action: shared.ActionDeny, Lifetime: shared.LifetimeUntil, Until: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
			Owner: 1000, Priority: -3, Note: "<b> \"quoted\"\n", Hits: 12, LastHit: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
			Match: shared.Match{Host: "*.example.org", UID: &uid}},
		{ID: "plain", Name: "r1", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true, Source: "store",
			Created: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), Updated: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Match: shared.Match{Exe: "/usr/lib/app1/bin/app1", Proto: shared.ProtoTCP, Port: shared.PortRange{Lo: 443, Hi: 443}}},
	}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", rules, want)
	}
}
