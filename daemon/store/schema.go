package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"

	bbolt "go.etcd.io/bbolt"
)

// Top-level buckets and meta keys. A Tollgate file has exactly the buckets of
// its schema; meta names the application, so another program's bbolt file
// is recognised as foreign rather than adopted.
var (
	bucketMeta  = []byte("meta")
	bucketRules = []byte("rules") // rule ID -> JSON of shared.Rule
	bucketLog   = []byte("log")   // big-endian sequence number -> log record (see log.go)

	keyApp    = []byte("app")    // appID
	keySchema = []byte("schema") // big-endian uint64 schema version
	appID     = []byte("tollgate")
)

// migration moves the file from one schema version to the next. It runs
// inside the one write transaction that takes the file to the current version,
// so a failure anywhere leaves the file as it was.
type migration struct {
	name string
	up   func(tx *bbolt.Tx) error
}

// schema is the list of migrations and the buckets of the newest version.
// Version n is the layout after migrations[0..n-1]; version 0 is an empty
// bbolt file (no buckets), which is how a new file starts.
type schema struct {
	migrations []migration
	buckets    [][]byte
}

func (s schema) version() uint64 { return uint64(len(s.migrations)) }

// tollgateSchema is the layout this build reads and writes. Append a
// migration (never edit a released one) to change it.
var tollgateSchema = schema{
	migrations: []migration{
		{name: "create meta, rules and log buckets", up: createV1},
	},
	buckets: [][]byte{bucketMeta, bucketRules, bucketLog},
}

func createV1(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketRules, bucketLog} {
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	return tx.Bucket(bucketMeta).Put(keyApp, appID)
}

// readVersion says whose file this is and which schema version it has: 0 for
// a bbolt file without any bucket (new, or initialised by bbolt but never
// by us), ErrForeign for anything without Tollgate's meta, ErrTooNew past
// sch's version.
func readVersion(tx *bbolt.Tx, sch schema) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		names, err := topLevel(tx)
		if err != nil {
			return 0, err
		}
		if len(names) == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: it has no %q bucket but holds %s", ErrForeign, bucketMeta, listNames(names))
	}
	if app := meta.Get(keyApp); !bytes.Equal(app, appID) {
		return 0, fmt.Errorf("%w: its meta bucket names application %q", ErrForeign, app)
	}
	v := meta.Get(keySchema)
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: schema version record is %d bytes, want 8", ErrCorrupt, len(v))
	}
	version := binary.BigEndian.Uint64(v)
	switch {
	case version == 0:
		return 0, fmt.Errorf("%w: schema version 0 with a meta bucket", ErrCorrupt)
	case version > sch.version():
		return 0, fmt.Errorf("%w: file has schema version %d, this build knows up to %d", ErrTooNew, version, sch.version())
	}
	return version, nil
}

// checkLayout checks that the file has exactly the current version's
// top-level buckets.
func checkLayout(tx *bbolt.Tx, sch schema) error {
	names, err := topLevel(tx)
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
	}
	want := make(map[string]bool, len(sch.buckets))
	for _, b := range sch.buckets {
		want[string(b)] = true
		if !have[string(b)] {
			return fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, b)
		}
	}
	for _, n := range names {
		if !want[n] {
			return fmt.Errorf("%w: it holds bucket %q, which is not tollgate's", ErrForeign, n)
		}
	}
	return nil
}

// topLevel lists the root's buckets; a plain key at the root (which bbolt's
// API cannot make) means the file is not ours.
func topLevel(tx *bbolt.Tx) ([]string, error) {
	var names []string
	c := tx.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			return nil, fmt.Errorf("%w: key %q at the root is not a bucket", ErrForeign, k)
		}
		names = append(names, string(k))
	}
	return names, nil
}

func listNames(names []string) string {
	const show = 5
	q := make([]string, 0, show)
	for i, n := range names {
		if i == show {
			q = append(q, fmt.Sprintf("and %d more", len(names)-show))
			break
		}
		q = append(q, fmt.Sprintf("%q", n))
	}
	return "buckets " + strings.Join(q, ", ")
}

// migrate takes the file in tx to sch's version: it re-reads the version
// (the file is now held exclusively), runs the missing migrations, records
// the new version and checks the resulting layout. It returns the version it
// started from.
func migrate(tx *bbolt.Tx, sch schema, log *slog.Logger) (uint64, error) {
	from, err := readVersion(tx, sch)
	if err != nil {
		return 0, err
	}
	for v := from; v < sch.version(); v++ {
		m := sch.migrations[v]
		log.Info("store migration", "from", v, "to", v+1, "step", m.name)
		if err := m.up(tx); err != nil {
			return 0, fmt.Errorf("migrate schema %d to %d (%s): %w", v, v+1, m.name, err)
		}
	}
	if from != sch.version() {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], sch.version())
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return 0, fmt.Errorf("%w: migrations left no %q bucket", ErrCorrupt, bucketMeta)
		}
		if err := meta.Put(keySchema, v[:]); err != nil {
			return 0, fmt.Errorf("record schema version: %w", err)
		}
	}
	return from, checkLayout(tx, sch)
}
