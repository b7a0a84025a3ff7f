// Package store is the daemon's persistent store: forever rules and a bounded
// connection log in one bbolt file (default /var/lib/tollgate/tollgate.db).
//
// It owns the file's layout (buckets meta, rules and log), the schema version
// and the migrations between versions, and the decision whether a file is
// Tollgate's at all. A file that is corrupt, belongs to another application
// or was written by a newer Tollgate is refused with an error naming the file
// and is never written to: Open inspects such a file read-only before it
// opens it for writing.
//
// It must not decide anything about rules (validation, precedence and
// lifetimes belong to the rule engine; the store keeps what it is given) and
// must not talk to the kernel or D-Bus. Only the daemon opens the file; bbolt's
// file lock keeps a second process out.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Defaults for zero Options fields.
const (
	DefaultPath        = "/var/lib/tollgate/tollgate.db"
	DefaultLockTimeout = 5 * time.Second
)

// Errors Open (and, for ErrCorrupt, any later call) wraps; test with errors.Is.
var (
	// ErrLocked: another process (or another Store in this one) holds the
	// file and did not let go within Options.LockTimeout.
	ErrLocked = errors.New("database is locked by another process")
	// ErrCorrupt: the file is not a readable bbolt database, or its structure
	// or Tollgate's records in it are damaged.
	ErrCorrupt = errors.New("database file is corrupt")
	// ErrForeign: the file is a bbolt database of some other application.
	ErrForeign = errors.New("database file does not belong to tollgate")
	// ErrTooNew: the file was written by a newer Tollgate (a schema version
	// this build does not know).
	ErrTooNew = errors.New("database schema is newer than this tollgate")
	// ErrNotFound: no stored rule has that ID.
	ErrNotFound = errors.New("rule not found")
	// ErrInvalidRule: a rule the store cannot keep (empty or duplicate ID).
	ErrInvalidRule = errors.New("invalid rule")
)

// Options says where the store lives and how it behaves. The zero value
// means: DefaultPath, DefaultLockTimeout, no connection log kept.
type Options struct {
	// Path of the database file. Its directory is created (0700) when missing.
	Path string
	// LockTimeout bounds the wait for another holder of the file (bbolt's
	// file lock). Zero or negative means DefaultLockTimeout; the store never
	// waits forever.
	LockTimeout time.Duration
	// MaxLogEntries bounds the connection log: appending beyond it drops the
	// oldest entries. Zero or negative keeps no log at all.
	MaxLogEntries int
	// ReadOnly opens the file with a shared lock for inspection (tools,
	// backups): nothing is written, writes fail, and a file that would need
	// initialising or migrating is refused instead.
	ReadOnly bool
}

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	db     *bbolt.DB
	path   string
	log    *slog.Logger
	maxLog int
}

// Open opens (creating and initialising when missing or empty) the database
// at opts.Path, migrates it to the current schema in one transaction, and
// trims the connection log to opts.MaxLogEntries.
//
// A file that is not Tollgate's or not healthy is refused with ErrCorrupt,
// ErrForeign or ErrTooNew and left byte-for-byte untouched; a file held by
// another process yields ErrLocked after opts.LockTimeout. Every error names
// the file.
func Open(opts Options, log *slog.Logger) (*Store, error) {
	return open(opts, log, internalOptions{schema: tollgateSchema})
}

// internalOptions are what tests vary beyond Options.
type internalOptions struct {
	schema schema
	noSync bool // skip fsync (fuzzing: thousands of files, none kept)
}

func open(opts Options, log *slog.Logger, in internalOptions) (*Store, error) {
	sch := in.schema
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.MaxLogEntries < 0 {
		opts.MaxLogEntries = 0
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := opts.Path
	fail := func(err error) (*Store, error) {
		return nil, openError(path, err)
	}

	fresh := false
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if opts.ReadOnly {
			return fail(err)
		}
		fresh = true
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fail(fmt.Errorf("create directory: %w", err))
		}
	case err != nil:
		return fail(err)
	case !info.Mode().IsRegular():
		return fail(fmt.Errorf("not a regular file (%s)", info.Mode().Type()))
	case info.Size() == 0:
		fresh = true
	}

	s := &Store{path: path, log: log, maxLog: opts.MaxLogEntries}
	version := uint64(0) // a missing or empty file starts at version 0
	if !fresh {
		// Look before writing anything: bbolt's read-write open may itself
		// write (it syncs a missing freelist), and the first write
		// transaction would touch whatever file this is.
		db, v, err := inspect(path, opts.LockTimeout, sch)
		if err != nil {
			return fail(err)
		}
		version = v
		if opts.ReadOnly {
			if version != sch.version() {
				_ = db.Close()
				return fail(fmt.Errorf("schema version %d needs migrating to %d, which a read-only open cannot do", version, sch.version()))
			}
			s.db = db
			log.Info("store opened read-only", "path", path, "schema", version)
			return s, nil
		}
		if err := db.Close(); err != nil {
			return fail(fmt.Errorf("close after inspection: %w", err))
		}
	}
	if opts.ReadOnly {
		return fail(errors.New("empty file: nothing to read"))
	}

	db, err := boltOpen(path, &bbolt.Options{Timeout: opts.LockTimeout, NoSync: in.noSync})
	if err != nil {
		return fail(err)
	}
	s.db = db
	if err := s.prepare(sch, version); err != nil {
		_ = db.Close()
		return fail(err)
	}
	return s, nil
}

// prepare brings the freshly opened read-write file from version to the
// current schema and trims the log, each in one transaction, and only when
// needed: a healthy file at the current version is opened without a write,
// so the daemon starts (read-only in effect) on a full disk.
func (s *Store) prepare(sch schema, version uint64) error {
	if version != sch.version() {
		var from uint64
		err := s.update(func(tx *bbolt.Tx) error {
			var err error
			from, err = migrate(tx, sch, s.log)
			return err
		})
		if err != nil {
			return err
		}
		s.log.Info("store migrated", "path", s.path, "from", from, "to", sch.version())
	}
	var trim bool
	err := s.view(func(tx *bbolt.Tx) error {
		trim = logOverBound(tx.Bucket(bucketLog), s.maxLog+trimSlack(s.maxLog))
		return nil
	})
	if err == nil && trim {
		err = s.update(func(tx *bbolt.Tx) error {
			return trimLog(tx.Bucket(bucketLog), s.maxLog)
		})
	}
	if err != nil {
		return fmt.Errorf("trim connection log: %w", err)
	}
	s.log.Info("store opened", "path", s.path, "schema", sch.version())
	return nil
}

// inspect opens path read-only (shared lock), checks the page structure and
// Tollgate's meta records without writing, and returns the open handle and the
// file's schema version.
func inspect(path string, timeout time.Duration, sch schema) (_ *bbolt.DB, version uint64, err error) {
	db, err := boltOpen(path, &bbolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()
	if err := checkPath(path, db.Info().PageSize); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	err = guarded(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			var err error
			version, err = readVersion(tx, sch)
			if err != nil || version != sch.version() {
				// Older layouts are checked after migrating, inside the
				// migration transaction.
				return err
			}
			return checkLayout(tx, sch)
		})
	})
	return db, version, err
}

// boltOpen opens a bbolt file under guard and sorts its failures into the
// store's errors.
func boltOpen(path string, o *bbolt.Options) (db *bbolt.DB, err error) {
	err = guarded(func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, o)
		return err
	})
	if err == nil {
		return db, nil
	}
	var pathErr *fs.PathError
	var errno syscall.Errno
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w (waited %s)", ErrLocked, o.Timeout)
	case errors.Is(err, ErrCorrupt):
		return nil, err
	case errors.As(err, &pathErr), errors.As(err, &errno):
		return nil, err // the file system said no: not a statement about the contents
	default:
		// ErrInvalid, ErrChecksum, ErrVersionMismatch, "file size too small"...
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
}

// openError names the file in an Open failure and, for refusals of the
// contents, says that the file was left alone.
func openError(path string, err error) error {
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrForeign) || errors.Is(err, ErrTooNew) {
		return fmt.Errorf("open store %s: %w (the file was not modified; move it away to start with an empty store)", path, err)
	}
	return fmt.Errorf("open store %s: %w", path, err)
}

// guarded runs fn and turns a panic (bbolt asserts on damaged pages; a fault
// reading the memory-mapped file) into ErrCorrupt.
func guarded(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading it failed: %v", ErrCorrupt, r)
		}
	}()
	return fn()
}

// view runs fn in a read transaction under guard.
func (s *Store) view(fn func(tx *bbolt.Tx) error) error {
	return guarded(func() error { return s.db.View(fn) })
}

// update runs fn in a write transaction under guard; bbolt rolls it back when
// fn fails or panics, and commits it (with fsync) otherwise.
func (s *Store) update(fn func(tx *bbolt.Tx) error) error {
	return guarded(func() error { return s.db.Update(fn) })
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}
