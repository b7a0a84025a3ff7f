package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tollgate-fw/tollgate/shared"
)

// testLogger sends the store's log to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "tollgate.db") }

// openT opens a store and closes it when the test ends.
func openT(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(opts, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fullRule has every field of shared.Rule set to a non-zero value.
func fullRule(id string) shared.Rule {
	uid, gid := uint32(1000), uint32(100)
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	return shared.Rule{
		ID:       id,
		Name:     "Firefox to the web",
		Action:   shared.ActionReject,
		Lifetime: shared.LifetimeForever,
		Until:    t0.Add(48 * time.Hour),
		Owner:    1000,
		Enabled:  true,
		Priority: -7,
		Note:     "a note with \"quotes\", ünïcode and\na newline",
		Match: shared.Match{
			Exe:       "/usr/lib/firefox/firefox",
			ExeSHA256: strings.Repeat("ab", 32),
			Cmdline:   "/usr/lib/firefox/firefox -P *",
			Unit:      "app-firefox@123.scope",
			UID:       &uid,
			GID:       &gid,
			Direction: shared.DirectionOut,
			Proto:     shared.ProtoTCP,
			Host:      "*.example.org",
			IP:        netip.MustParsePrefix("2001:db8::/32"),
			Port:      shared.PortRange{Lo: 443, Hi: 443},
			LocalPort: shared.PortRange{Lo: 8000, Hi: 8100},
			Iface:     "wlan0",
		},
		PID:      4242,
		PIDStart: 1234567,
		Session:  ":1.42",
		Source:   "store",
		ReadOnly: true,
		Created:  t0,
		Updated:  t0.Add(time.Minute),
		Hits:     99,
		LastHit:  t0.Add(2 * time.Minute),
	}
}

// smallRule is a typical rule as a user's answer makes it.
func smallRule(id string) shared.Rule {
	uid := uint32(1000)
	return shared.Rule{
		ID: id, Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: 1000, Enabled: true,
		Match: shared.Match{
			Exe: "/usr/bin/curl-" + id, UID: &uid, Direction: shared.DirectionOut, Proto: shared.ProtoTCP,
			Host: "example.org", Port: shared.PortRange{Lo: 443, Hi: 443},
		},
		Source:  "store",
		Created: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		Updated: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func logEntry(id uint64, at time.Time, uid int64, action shared.Action) shared.LogEntry {
	return shared.LogEntry{
		Connection: shared.Connection{
			ID: id, Time: at, Direction: shared.DirectionOut, Proto: shared.ProtoTCP, ProtoNum: 6,
			LocalIP: netip.MustParseAddr("10.0.0.2"), LocalPort: 40000 + uint16(id%1000),
			RemoteIP: netip.MustParseAddr("2001:db8::1"), RemotePort: 443, Iface: "eth0",
			UID: uid, GID: 100, PID: 1000 + int(id), PIDStart: 555, PPID: 1, Exe: "/usr/bin/curl",
			ExeSHA256: strings.Repeat("cd", 32), Cmdline: "curl https://example.org", Unit: "session-2.scope",
			User: "alice", Attribution: shared.AttributedProcess, Hosts: []string{"example.org"},
		},
		Verdict: shared.Verdict{Action: action, RuleID: fmt.Sprintf("r%d", id%7), Reason: "rule r says so"},
	}
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// rawUpdate edits a bbolt file directly, as another program (or a hand
// edit) would.
func rawUpdate(t testing.TB, path string, o *bbolt.Options, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func rawView(t testing.TB, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(fn); err != nil {
		t.Fatal(err)
	}
}

func putSchema(tx *bbolt.Tx, v uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return tx.Bucket(bucketMeta).Put(keySchema, b[:])
}

func schemaOf(t testing.TB, path string) uint64 {
	var v uint64
	rawView(t, path, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil {
			return errors.New("no meta bucket")
		}
		raw := b.Get(keySchema)
		if len(raw) != 8 {
			return fmt.Errorf("schema record %x", raw)
		}
		v = binary.BigEndian.Uint64(raw)
		return nil
	})
	return v
}

// expectRefused opens path, wants an error wrapping want that names the file,
// and checks that the file's bytes did not change.
func expectRefused(t *testing.T, path string, want error) error {
	t.Helper()
	before := fileSum(t, path)
	s, err := Open(Options{Path: path, LockTimeout: time.Second, MaxLogEntries: 10}, testLogger(t))
	if err == nil {
		_ = s.Close()
		t.Fatalf("Open succeeded, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("Open: %v, want errors.Is %v", err, want)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if after := fileSum(t, path); !bytes.Equal(before[:], after[:]) {
		t.Fatalf("Open changed the refused file")
	}
	return err
}
