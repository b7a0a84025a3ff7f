package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tollgate-fw/tollgate/shared"
)

// goldenLogEntries are log entries of every shape the encoder meets: all
// fields, none, strings needing escapes, IPv4-in-6 and zoned addresses,
// times in other zones, several hosts.
func goldenLogEntries() []shared.LogEntry {
	full := logEntry(1, time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC), 1000, shared.ActionAllow)
	full.Connection.ExeClaimed = "/tmp/claimed"
	full.Connection.App = "flatpak:org.example.App"
	full.Connection.HostSource = shared.HostFromProcess
	full.Verdict.Monitor, full.Verdict.Unasked = true, true

	odd := shared.LogEntry{
		Connection: shared.Connection{
			ID: 1<<64 - 1, Time: time.Date(1999, 12, 31, 23, 59, 59, 0, time.FixedZone("x", -(9*3600+30*60))),
			Direction: shared.DirectionIn, Proto: shared.ProtoUDP, ProtoNum: 255,
			LocalIP: netip.MustParseAddr("::ffff:10.1.2.3"), LocalPort: 65535,
			RemoteIP: netip.MustParseAddr("fe80::1%we<ird\"zone"), RemotePort: 1, Iface: "wl\tan0",
			UID: -1, GID: -1, PID: -5, PPID: 2147483647, PIDStart: 1,
			Exe: "/opt/<a&b>/\"quoted\"\\back", Cmdline: "a\x00b\x01c\nd\re\bf\fg\x7f h\u2028i\u2029j \xff\xfe k 日本語 😀",
			Unit: "\x1f", User: "ünïcödé", Attribution: shared.AttributedUIDOnly,
			Hosts: []string{"a.example", "b.example", "<c>.example"}, HostSource: shared.HostFromAny,
		},
		Verdict: shared.Verdict{Action: shared.ActionReject, Reason: "no rule matched & nobody asked: <default>"},
	}
	empty := shared.LogEntry{}
	local := logEntry(3, time.Date(2024, 2, 29, 1, 2, 3, 4000, time.FixedZone("CET", 3600)), 0, shared.ActionDeny)
	local.Connection.Hosts = []string{}
	return []shared.LogEntry{full, odd, empty, local}
}

// readGolden reads testdata/log-format1.txt: records as the build before
// the hand-written encoder wrote them (json.Marshal after the header).
func readGolden(t *testing.T) [][]byte {
	t.Helper()
	f, err := os.Open("testdata/log-format1.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLogRecordsOfEarlierBuilds: records the previous build wrote read back
// as the entries they were made of, and this build writes the same bytes
// for those entries.
func TestLogRecordsOfEarlierBuilds(t *testing.T) {
	golden := readGolden(t)
	want := goldenLogEntries()
	if len(golden) != len(want) {
		t.Fatalf("%d golden records for %d entries", len(golden), len(want))
	}
	path := dbPath(t)
	s := openT(t, Options{Path: path, MaxLogEntries: 100})
	s.Close()
	rawUpdate(t, path, nil, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketLog)
		for _, v := range golden {
			seq, _ := b.NextSequence()
			if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
				return err
			}
		}
		return nil
	})
	s = openT(t, Options{Path: path, MaxLogEntries: 100})
	got, err := s.Log(LogFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		w := want[len(want)-1-i] // newest first
		if !logEntriesEqual(got[i], w) {
			t.Errorf("record %d read back as\n%+v\nwant\n%+v", len(want)-1-i, got[i], w)
		}
	}
	for i := range want {
		v, err := encodeLogEntry(&want[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(v, golden[i]) {
			t.Errorf("entry %d encodes as\n%q\nthe previous build wrote\n%q", i, v, golden[i])
		}
	}
}

// logEntriesEqual compares what a JSON round trip keeps: times as instants
// (the zone comes back as a fixed offset), invalid UTF-8 as U+FFFD, an
// empty host list as none.
func logEntriesEqual(a, b shared.LogEntry) bool {
	norm := func(e shared.LogEntry) shared.LogEntry {
		js, _ := json.Marshal(e)
		var out shared.LogEntry
		_ = json.Unmarshal(js, &out)
		return out
	}
	a, b = norm(a), norm(b)
	if !a.Connection.Time.Equal(b.Connection.Time) {
		return false
	}
	a.Connection.Time, b.Connection.Time = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// TestLogJSONIsEncodingJSON: the hand-written encoder writes what
// json.Marshal writes, for entries of every shape.
func TestLogJSONIsEncodingJSON(t *testing.T) {
	es := goldenLogEntries()
	for i := range 50 {
		es = append(es, logEntry(uint64(i)*7919, t0.Add(time.Duration(i)*time.Hour), int64(i)-1, shared.ActionAllow))
	}
	for i := range es {
		checkLogJSON(t, &es[i])
	}
}

func checkLogJSON(t *testing.T, e *shared.LogEntry) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, ok := appendLogJSON(nil, e)
	switch {
	case wantErr != nil && ok:
		t.Fatalf("json.Marshal fails (%v), appendLogJSON wrote %q", wantErr, got)
	case wantErr == nil && !ok:
		t.Fatalf("appendLogJSON refused what json.Marshal writes: %q", want)
	case wantErr == nil && !bytes.Equal(got, want):
		t.Fatalf("appendLogJSON wrote\n%q\njson.Marshal\n%q", got, want)
	}
	rec, err := encodeLogEntry(e)
	if tooLong := len(e.Verdict.Action) > math.MaxUint8; (err != nil) != (wantErr != nil || tooLong) {
		t.Fatalf("encodeLogEntry error %v, json.Marshal's %v, action of %d bytes", err, wantErr, len(e.Verdict.Action))
	}
	if err == nil && !bytes.HasSuffix(rec, want) {
		t.Fatalf("record %q does not end in the JSON", rec)
	}
}

// TestLogJSONRefusesWhatJSONRefuses: times json.Marshal cannot write fail
// the append with its error, and the batch is not written.
func TestLogJSONRefusesWhatJSONRefuses(t *testing.T) {
	s := openT(t, Options{Path: dbPath(t), MaxLogEntries: 10})
	for _, at := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600)),
	} {
		e := logEntry(1, at, 1, shared.ActionAllow)
		checkLogJSON(t, &e)
		if err := s.AppendLog([]shared.LogEntry{logEntry(2, t0, 1, shared.ActionAllow), e}); err == nil {
			t.Fatalf("AppendLog took a time of %v", at)
		}
	}
	if got, _ := s.Log(LogFilter{}); len(got) != 0 {
		t.Fatalf("a failed batch left %v", ids(got))
	}
}

// TestLogJSONKnowsEveryField sets every field of a LogEntry, one at a
// time and all together, to a value that is not zero, and compares the
// encoders: a field added to shared.Connection or shared.Verdict that the
// hand-written encoder leaves out fails here.
func TestLogJSONKnowsEveryField(t *testing.T) {
	var all shared.LogEntry
	n := 0
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		if v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[time.Time]() && v.Type() != reflect.TypeFor[netip.Addr]() {
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
			return
		}
		n++
		setNonZero(t, v, path)
		var one shared.LogEntry
		// The same field in an otherwise empty entry.
		setNonZero(t, reflect.ValueOf(&one).Elem().FieldByIndex(fieldIndex(t, path)), path)
		checkLogJSON(t, &one)
	}
	walk(reflect.ValueOf(&all).Elem(), "")
	checkLogJSON(t, &all)
	if n < 30 {
		t.Fatalf("walked %d fields", n)
	}
}

// fieldIndex finds the field at path (".Connection.ID") in a LogEntry.
func fieldIndex(t *testing.T, path string) []int {
	typ := reflect.TypeFor[shared.LogEntry]()
	var idx []int
	for _, name := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		f, ok := typ.FieldByName(name)
		if !ok {
			t.Fatalf("no field %s", path)
		}
		idx = append(idx, f.Index...)
		typ = f.Type
	}
	return idx
}

func setNonZero(t *testing.T, v reflect.Value, path string) {
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2025, 6, 1, 12, 0, 0, 5, time.UTC)))
		return
	case v.Type() == reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.MustParseAddr("192.0.2.1")))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("v<&>")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			t.Fatalf("%s: a slice of %s: teach appendLogJSON and this test", path, v.Type().Elem())
		}
		v.Set(reflect.ValueOf([]string{"a", "b"}).Convert(v.Type()))
	default:
		t.Fatalf("%s: a %s: teach appendLogJSON and this test", path, v.Type())
	}
}

func FuzzLogJSON(f *testing.F) {
	f.Add(uint64(1), int64(1748779200123456789), int64(1000), "/usr/bin/curl", "curl <x> & \"y\"", "fe80::1%eth0", "example.org", "allow", "why\n", uint8(3))
	f.Add(uint64(0), int64(0), int64(-1), "", "", "", "", "", "", uint8(0))
	f.Add(uint64(math.MaxUint64), int64(math.MinInt64), int64(math.MinInt64), "\xff\xfe\u2028", "\x00\x1f\x7f", "::ffff:1.2.3.4", "日本", "deny", "\u2029", uint8(255))
	f.Fuzz(func(t *testing.T, id uint64, nanos, uid int64, exe, cmd, addr, host, action, reason string, flags uint8) {
		e := shared.LogEntry{
			Connection: shared.Connection{
				ID: id, Time: time.Unix(0, nanos).In(time.FixedZone("z", int(nanos%(30*3600)))),
				Direction: shared.Direction(host), Proto: shared.Proto(action), ProtoNum: flags,
				LocalPort: uint16(id), RemotePort: uint16(id >> 16), Iface: reason,
				UID: uid, GID: -uid, PID: int(int32(nanos)), PIDStart: id >> 3, PPID: int(int32(uid)),
				Exe: exe, ExeClaimed: cmd, ExeSHA256: host, Cmdline: cmd, Unit: reason, App: exe, User: host,
				Attribution: shared.Attribution(reason), HostSource: exe,
			},
			Verdict: shared.Verdict{Action: shared.Action(action), RuleID: exe, Reason: reason,
				Monitor: flags&1 != 0, Unasked: flags&2 != 0, Answered: flags&16 != 0},
		}
		if flags&4 != 0 {
			e.Connection.Time = time.Time{}
		}
		if a, err := netip.ParseAddr(addr); err == nil {
			e.Connection.LocalIP, e.Connection.RemoteIP = a, a
		}
		if flags&8 != 0 {
			e.Connection.Hosts = strings.Split(cmd, ",")
		}
		checkLogJSON(t, &e)
	})
}

// TestLogTrimsInRuns: the bucket grows to the bound plus its slack before
// the oldest are deleted, readers see the newest MaxLogEntries throughout,
// and a reopen with the same bound leaves the slack alone.
func TestLogTrimsInRuns(t *testing.T) {
	const max = 64 // slack 4
	path := dbPath(t)
	s := openT(t, Options{Path: path, MaxLogEntries: max})
	keys := func() int {
		n := 0
		rawViewOpen(t, s, func(tx *bbolt.Tx) error {
			n = tx.Bucket(bucketLog).Stats().KeyN
			return nil
		})
		return n
	}
	var sizes []int
	for id := uint64(1); id <= 3*max; id++ {
		if err := s.AppendLog(entries(id, 1)); err != nil {
			t.Fatal(err)
		}
		n := keys()
		if n > max+trimSlack(max) {
			t.Fatalf("after %d appends the bucket holds %d records, bound %d + slack %d", id, n, max, trimSlack(max))
		}
		sizes = append(sizes, n)
		got, err := s.Log(LogFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if want := seq(id, max0(id, max)); !reflect.DeepEqual(ids(got), want) {
			t.Fatalf("after %d appends: log ids %v, want %v", id, ids(got), want)
		}
	}
	// Past the bound the size goes max+1 .. max+slack, then back to max.
	trims := 0
	for i := 1; i < len(sizes); i++ {
		if sizes[i] < sizes[i-1] {
			trims++
			if sizes[i-1] != max+trimSlack(max) || sizes[i] != max {
				t.Fatalf("trimmed from %d to %d records, want %d to %d", sizes[i-1], sizes[i], max+trimSlack(max), max)
			}
		}
	}
	if want := (2*max - 1) / (trimSlack(max) + 1); trims != want {
		t.Fatalf("%d trims over %d appends past the bound, want %d", trims, 2*max, want)
	}
	before := keys()
	s.Close()
	s = openT(t, Options{Path: path, MaxLogEntries: max})
	if n := keys(); n != before {
		t.Fatalf("reopening with the same bound trimmed %d records to %d", before, n)
	}
	got, _ := s.Log(LogFilter{Limit: 3})
	if want := seq(3*max, 3*max-2); !reflect.DeepEqual(ids(got), want) {
		t.Fatalf("after reopening: log ids %v, want %v", ids(got), want)
	}
}

// max0 is the lowest id of the newest max of ids 1..id.
func max0(id uint64, max int) uint64 {
	if id <= uint64(max) {
		return 1
	}
	return id - uint64(max) + 1
}

func BenchmarkEncodeLogEntry(b *testing.B) {
	e := logEntry(12345, t0, 1000, shared.ActionAllow)
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendLogRecord", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			var err error
			if buf, err = appendLogRecord(buf[:0], &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
