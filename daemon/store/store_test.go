package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tollgate-fw/tollgate/shared"
)

func TestOpenCreatesAndInitialises(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "tollgate.db")
	s := openT(t, Options{Path: path})
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}
	if v := schemaOf(t, path); v != tollgateSchema.version() {
		t.Errorf("schema %d, want %d", v, tollgateSchema.version())
	}
	rawView(t, path, func(tx *bbolt.Tx) error {
		if app := tx.Bucket(bucketMeta).Get(keyApp); !bytes.Equal(app, appID) {
			t.Errorf("app id %q", app)
		}
		return checkLayout(tx, tollgateSchema)
	})
}

func TestOpenEmptyFileInitialises(t *testing.T) {
	path := dbPath(t)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, Options{Path: path})
	if err := s.PutRule(smallRule("a")); err != nil {
		t.Fatal(err)
	}
}

func TestOpenVersion0BoltFileInitialises(t *testing.T) {
	// A bbolt file without buckets: what a crash between bbolt creating the
	// file and our first transaction leaves.
	path := dbPath(t)
	rawUpdate(t, path, nil, func(*bbolt.Tx) error { return nil })
	s := openT(t, Options{Path: path})
	rules, bad, err := s.Rules()
	if err != nil || len(rules) != 0 || len(bad) != 0 {
		t.Fatalf("Rules() = %v, %v, %v", rules, bad, err)
	}
	s.Close()
	if v := schemaOf(t, path); v != 1 {
		t.Errorf("schema %d, want 1", v)
	}
}

func TestReopenPersists(t *testing.T) {
	path := dbPath(t)
	opts := Options{Path: path, MaxLogEntries: 100}
	s := openT(t, opts)
	if err := s.PutRules([]shared.Rule{fullRule("a"), smallRule("b")}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	if err := s.AppendLog([]shared.LogEntry{logEntry(1, at, 1000, shared.ActionAllow)}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateHits(map[string]Hit{"b": {Count: 3, Last: at}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, opts)
	rules, bad, err := s.Rules()
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	wantB := smallRule("b")
	wantB.Hits, wantB.LastHit = 3, at
	assertRules(t, rules, fullRule("a"), wantB)
	log, err := s.Log(LogFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 1 || log[0].Connection.ID != 1 {
		t.Fatalf("log after reopen: %+v", log)
	}
}

func TestGarbageFileIsCorruptAndUntouched(t *testing.T) {
	random := make([]byte, 64<<10)
	rand.Read(random)
	valid := validImage(t)
	zeroMetas := bytes.Clone(valid)
	clear(zeroMetas[:2*4096])
	cases := map[string][]byte{
		"random 64KiB":     random,
		"one byte":         {0},
		"text":             []byte("[rules]\nthis is a TOML file, not a database\n"),
		"zeros 16KiB":      make([]byte, 16<<10),
		"truncated valid":  valid[:5000],
		"meta pages wiped": zeroMetas,
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			path := dbPath(t)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			err := expectRefused(t, path, ErrCorrupt)
			if !strings.Contains(err.Error(), "not modified") {
				t.Errorf("error %q does not say the file was left alone", err)
			}
		})
	}
}

func TestForeignBoltFileIsRefusedAndUntouched(t *testing.T) {
	cases := map[string]struct {
		opts *bbolt.Options
		fill func(tx *bbolt.Tx) error
	}{
		"other app's bucket": {fill: func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket([]byte("foo"))
			if err != nil {
				return err
			}
			return b.Put([]byte("k"), []byte("v"))
		}},
		// etcd writes without a freelist; bbolt's read-write open would
		// write one, so this catches an Open that looks too late.
		"other app without freelist": {opts: &bbolt.Options{NoFreelistSync: true}, fill: func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucket([]byte("key"))
			return err
		}},
		"meta bucket of another app": {fill: func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket([]byte("meta"))
			if err != nil {
				return err
			}
			return b.Put([]byte("app"), []byte("someone-else"))
		}},
		"meta bucket without app": {fill: func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucket([]byte("meta"))
			return err
		}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := dbPath(t)
			rawUpdate(t, path, c.opts, c.fill)
			expectRefused(t, path, ErrForeign)
		})
	}
}

func TestOurFileWithAnExtraBucketIsForeign(t *testing.T) {
	path := dbPath(t)
	openT(t, Options{Path: path}).Close()
	rawUpdate(t, path, nil, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("foo"))
		return err
	})
	err := expectRefused(t, path, ErrForeign)
	if !strings.Contains(err.Error(), `"foo"`) {
		t.Errorf("error %q does not name the bucket", err)
	}
}

func TestDamagedMetaRecordsAreCorrupt(t *testing.T) {
	cases := map[string]func(tx *bbolt.Tx) error{
		"schema record missing": func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keySchema) },
		"schema record short":   func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{1}) },
		"schema version 0":      func(tx *bbolt.Tx) error { return putSchema(tx, 0) },
		"rules bucket missing":  func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketRules) },
		"log bucket missing":    func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketLog) },
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			path := dbPath(t)
			openT(t, Options{Path: path}).Close()
			rawUpdate(t, path, nil, damage)
			expectRefused(t, path, ErrCorrupt)
		})
	}
}

func TestNewerSchemaIsRefusedAndUntouched(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path})
	if err := s.PutRule(smallRule("a")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawUpdate(t, path, nil, func(tx *bbolt.Tx) error { return putSchema(tx, tollgateSchema.version()+1) })
	err := expectRefused(t, path, ErrTooNew)
	if !strings.Contains(err.Error(), "schema version 2") {
		t.Errorf("error %q does not give the version", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := dbPath(t)
	first := openT(t, Options{Path: path})
	if err := first.PutRule(smallRule("a")); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		s, err := Open(Options{Path: path, LockTimeout: 100 * time.Millisecond, ReadOnly: ro}, testLogger(t))
		if err == nil {
			s.Close()
			t.Fatalf("second Open (read-only %v) succeeded while the first holds the file", ro)
		}
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
			t.Fatalf("second Open (read-only %v): %v, want ErrLocked naming the file", ro, err)
		}
	}
	// The first store is unaffected, and once it is closed the file opens.
	if err := first.PutRule(smallRule("b")); err != nil {
		t.Fatal(err)
	}
	first.Close()
	openT(t, Options{Path: path, LockTimeout: 100 * time.Millisecond})
}

func TestReadOnly(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path, MaxLogEntries: 10})
	if err := s.PutRule(smallRule("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog([]shared.LogEntry{logEntry(1, time.Now(), 0, shared.ActionDeny)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before := fileSum(t, path)

	// Two readers share the file.
	r1 := openT(t, Options{Path: path, ReadOnly: true, MaxLogEntries: 10})
	r2 := openT(t, Options{Path: path, ReadOnly: true, MaxLogEntries: 10})
	for _, r := range []*Store{r1, r2} {
		rules, _, err := r.Rules()
		if err != nil || len(rules) != 1 {
			t.Fatalf("Rules() read-only = %v, %v", rules, err)
		}
		if log, err := r.Log(LogFilter{}); err != nil || len(log) != 1 {
			t.Fatalf("Log() read-only = %v, %v", log, err)
		}
	}
	if err := r1.PutRule(smallRule("b")); err == nil {
		t.Error("PutRule on a read-only store succeeded")
	}
	if err := r1.AppendLog([]shared.LogEntry{logEntry(2, time.Now(), 0, shared.ActionDeny)}); err == nil {
		t.Error("AppendLog on a read-only store succeeded")
	}
	r1.Close()
	r2.Close()
	if after := fileSum(t, path); before != after {
		t.Error("read-only use changed the file")
	}

	missing := filepath.Join(t.TempDir(), "missing.db")
	if _, err := Open(Options{Path: missing, ReadOnly: true}, nil); err == nil {
		t.Error("read-only Open of a missing file succeeded")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open created the file: %v", err)
	}
}

func TestOpenRefusesADirectory(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Options{Path: dir}, nil); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Fatalf("Open(directory) = %v, want a not-a-regular-file error", err)
	}
}

// testSchema is the current schema plus a second version whose migration
// rewrites every rule's note and adds a bucket.
func testSchema(calls *int, fail bool) schema {
	sch := schema{
		migrations: append([]migration(nil), tollgateSchema.migrations...),
		buckets:    append([][]byte{[]byte("by_owner")}, tollgateSchema.buckets...),
	}
	sch.migrations = append(sch.migrations, migration{
		name: "index rules by owner",
		up: func(tx *bbolt.Tx) error {
			*calls++
			idx, err := tx.CreateBucket([]byte("by_owner"))
			if err != nil {
				return err
			}
			rules := tx.Bucket(bucketRules)
			var ids [][]byte
			if err := rules.ForEach(func(k, _ []byte) error { ids = append(ids, bytes.Clone(k)); return nil }); err != nil {
				return err
			}
			for _, id := range ids {
				var r shared.Rule
				if err := decodeRule(id, rules.Get(id), &r); err != nil {
					return err
				}
				r.Note = "migrated: " + r.Note
				v, err := encodeRule(r)
				if err != nil {
					return err
				}
				if err := rules.Put(id, v); err != nil {
					return err
				}
				if err := idx.Put(id, []byte("owner")); err != nil {
					return err
				}
			}
			if fail {
				return errors.New("disk on fire")
			}
			return nil
		},
	})
	return sch
}

func TestMigrationRunsOnceInOneTransaction(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path})
	if err := s.PutRules([]shared.Rule{smallRule("a"), smallRule("b")}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A migration that fails after rewriting every rule leaves nothing behind.
	before := fileSum(t, path)
	calls := 0
	_, err := open(Options{Path: path}, testLogger(t), internalOptions{schema: testSchema(&calls, true)})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "migrate schema 1 to 2") {
		t.Fatalf("open with failing migration: %v", err)
	}
	if calls != 1 {
		t.Fatalf("migration ran %d times, want 1", calls)
	}
	if after := fileSum(t, path); before != after {
		t.Fatal("a failed migration changed the file")
	}
	if v := schemaOf(t, path); v != 1 {
		t.Fatalf("schema %d after failed migration, want 1", v)
	}

	// The working migration runs once, and the file is at version 2.
	calls = 0
	s, err = open(Options{Path: path}, testLogger(t), internalOptions{schema: testSchema(&calls, false)})
	if err != nil {
		t.Fatal(err)
	}
	rules, _, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].Note != "migrated: " || rules[1].Note != "migrated: " {
		t.Fatalf("rules after migration: %+v", rules)
	}
	s.Close()
	if calls != 1 {
		t.Fatalf("migration ran %d times, want 1", calls)
	}
	if v := schemaOf(t, path); v != 2 {
		t.Fatalf("schema %d after migration, want 2", v)
	}
	s, err = open(Options{Path: path}, testLogger(t), internalOptions{schema: testSchema(&calls, false)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if calls != 1 {
		t.Fatalf("migration ran again on reopen (%d calls)", calls)
	}

	// This build (schema 1) now refuses the migrated file, untouched.
	expectRefused(t, path, ErrTooNew)
}

func TestNewFileRunsAllMigrations(t *testing.T) {
	calls := 0
	path := dbPath(t)
	s, err := open(Options{Path: path}, testLogger(t), internalOptions{schema: testSchema(&calls, false)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if calls != 1 || schemaOf(t, path) != 2 {
		t.Fatalf("calls %d, schema %d", calls, schemaOf(t, path))
	}
}

func TestOpeningAHealthyFileWritesNothing(t *testing.T) {
	path := dbPath(t)
	opts := Options{Path: path, MaxLogEntries: 50}
	s := openT(t, opts)
	if err := s.PutRules([]shared.Rule{fullRule("a"), smallRule("b")}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog(entries(1, 50)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before := fileSum(t, path)
	s = openT(t, opts)
	if _, _, err := s.Rules(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Log(LogFilter{Limit: 10}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if after := fileSum(t, path); before != after {
		t.Fatal("opening and reading a healthy file changed it")
	}
}

func TestGuardedTurnsPanicsIntoErrCorrupt(t *testing.T) {
	err := guarded(func() error { panic("page 7: unexpected flags") })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "page 7") {
		t.Fatalf("guarded: %v", err)
	}
	if err := guarded(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}
