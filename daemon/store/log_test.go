package store

import (
	"reflect"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tollgate-fw/tollgate/shared"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// entries makes n log entries with IDs from..from+n-1, one second apart.
func entries(from uint64, n int) []shared.LogEntry {
	out := make([]shared.LogEntry, n)
	for i := range out {
		id := from + uint64(i)
		out[i] = logEntry(id, t0.Add(time.Duration(id)*time.Second), 1000, shared.ActionAllow)
	}
	return out
}

func ids(es []shared.LogEntry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Connection.ID
	}
	return out
}

func seq(hi, lo uint64) []uint64 { // hi, hi-1, ..., lo
	var out []uint64
	for i := hi; i >= lo; i-- {
		out = append(out, i)
	}
	return out
}

func TestLogEntryRoundTrip(t *testing.T) {
	s := openT(t, Options{Path: dbPath(t), MaxLogEntries: 10})
	want := logEntry(7, t0, 1000, shared.ActionReject)
	want.Verdict.Monitor = true
	if err := s.AppendLog([]shared.LogEntry{want}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Log(LogFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestLogIsTrimmedToTheNewest(t *testing.T) {
	const max = 10
	for name, batch := range map[string]int{"batches of 1": 1, "batches of 7": 7, "one batch of 3×max": 3 * max} {
		t.Run(name, func(t *testing.T) {
			path := dbPath(t)
			s := openT(t, Options{Path: path, MaxLogEntries: max})
			all := entries(1, 3*max)
			for i := 0; i < len(all); i += batch {
				if err := s.AppendLog(all[i:min(i+batch, len(all))]); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Log(LogFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if want := seq(3*max, 2*max+1); !reflect.DeepEqual(ids(got), want) {
				t.Fatalf("log ids %v, want %v", ids(got), want)
			}
			var n int
			rawViewOpen(t, s, func(tx *bbolt.Tx) error {
				n = tx.Bucket(bucketLog).Stats().KeyN
				return nil
			})
			if n != max {
				t.Fatalf("log bucket holds %d records, want %d", n, max)
			}
		})
	}
}

// rawViewOpen looks into an open store's bucket directly.
func rawViewOpen(t *testing.T, s *Store, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	if err := s.db.View(fn); err != nil {
		t.Fatal(err)
	}
}

func TestLogTrimmedOnOpenWhenTheBoundShrinks(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path, MaxLogEntries: 100})
	if err := s.AppendLog(entries(1, 50)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, Options{Path: path, MaxLogEntries: 10})
	got, _ := s.Log(LogFilter{})
	if want := seq(50, 41); !reflect.DeepEqual(ids(got), want) {
		t.Fatalf("log ids %v, want %v", ids(got), want)
	}
	// Appending continues the sequence after the trimmed ones.
	if err := s.AppendLog(entries(51, 1)); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Log(LogFilter{})
	if want := seq(51, 42); !reflect.DeepEqual(ids(got), want) {
		t.Fatalf("log ids %v, want %v", ids(got), want)
	}
}

func TestLogDisabledKeepsNothing(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path, MaxLogEntries: 5})
	if err := s.AppendLog(entries(1, 5)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, Options{Path: path}) // MaxLogEntries 0
	if err := s.AppendLog(entries(6, 5)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Log(LogFilter{}); len(got) != 0 {
		t.Fatalf("log with MaxLogEntries 0 holds %v", ids(got))
	}
}

func TestLogFilters(t *testing.T) {
	s := openT(t, Options{Path: dbPath(t), MaxLogEntries: 100})
	// 12 entries: uid alternates 1000/1001, action cycles allow/deny/reject,
	// time = t0 + id seconds. Entry 13 has the zero time and uid -1.
	var es []shared.LogEntry
	actions := []shared.Action{shared.ActionAllow, shared.ActionDeny, shared.ActionReject}
	for id := uint64(1); id <= 12; id++ {
		es = append(es, logEntry(id, t0.Add(time.Duration(id)*time.Second), 1000+int64(id%2), actions[id%3]))
	}
	es = append(es, logEntry(13, time.Time{}, -1, shared.ActionDeny))
	if err := s.AppendLog(es); err != nil {
		t.Fatal(err)
	}
	uid1000, uidNone := int64(1000), int64(-1)
	cases := map[string]struct {
		f    LogFilter
		want []uint64
	}{
		"all":              {LogFilter{}, seq(13, 1)},
		"limit":            {LogFilter{Limit: 3}, []uint64{13, 12, 11}},
		"since":            {LogFilter{Since: t0.Add(10 * time.Second)}, []uint64{12, 11, 10}},
		"uid":              {LogFilter{UID: &uid1000}, []uint64{12, 10, 8, 6, 4, 2}},
		"unknown uid":      {LogFilter{UID: &uidNone}, []uint64{13}},
		"action":           {LogFilter{Action: shared.ActionReject}, []uint64{11, 8, 5, 2}},
		"uid and action":   {LogFilter{UID: &uid1000, Action: shared.ActionAllow}, []uint64{12, 6}},
		"all four":         {LogFilter{UID: &uid1000, Action: shared.ActionReject, Since: t0.Add(3 * time.Second), Limit: 1}, []uint64{8}},
		"nothing matches":  {LogFilter{Action: "teleport"}, nil},
		"since the future": {LogFilter{Since: t0.Add(time.Hour)}, nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) { wantLogIDs(t, s, c.f, c.want) })
	}
}

func TestLogSkipsMalformedRecords(t *testing.T) {
	path := dbPath(t)
	s := openT(t, Options{Path: path, MaxLogEntries: 100})
	if err := s.AppendLog(entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawUpdate(t, path, nil, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketLog)
		k := []byte{0, 0, 0, 0, 0, 0, 0, 2}
		v := b.Get(k)
		return b.Put(k, v[:len(v)-5]) // cut the JSON short
	})
	s = openT(t, Options{Path: path, MaxLogEntries: 100})
	got, err := s.Log(LogFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{3, 1}; !reflect.DeepEqual(ids(got), want) {
		t.Fatalf("ids %v, want %v", ids(got), want)
	}
}

func TestLogHeader(t *testing.T) {
	e := logEntry(1, t0, 4242, shared.ActionDeny)
	v, err := encodeLogEntry(&e)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseLogHeader(v)
	if err != nil {
		t.Fatal(err)
	}
	if h.time != t0.UnixNano() || h.uid != 4242 || string(h.action) != "deny" {
		t.Fatalf("header %+v", h)
	}
	for _, bad := range [][]byte{nil, {logFormat}, append([]byte{9}, v[1:]...), v[:logHeaderSize+2]} {
		if _, err := parseLogHeader(bad); err == nil {
			t.Errorf("parseLogHeader(%x) accepted", bad)
		}
	}
}

func FuzzLogHeader(f *testing.F) {
	e := logEntry(1, t0, 4242, shared.ActionDeny)
	v, _ := encodeLogEntry(&e)
	f.Add(v)
	f.Add([]byte{})
	f.Add([]byte{logFormat, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255})
	f.Fuzz(func(t *testing.T, v []byte) {
		h, err := parseLogHeader(v)
		if err != nil {
			return
		}
		if len(h.action) != int(v[17]) || logHeaderSize+len(h.action)+len(h.json) != len(v) {
			t.Fatalf("header %+v does not account for %d bytes", h, len(v))
		}
	})
}

// Exe and host filters walk the whole log (not only its newest part) and
// match exactly: a record whose other fields hold the same text (unit,
// claimed exe) is passed over.
func TestLogFiltersByExeAndHost(t *testing.T) {
	s := openT(t, Options{Path: dbPath(t), MaxLogEntries: 1000})
	var es []shared.LogEntry
	for id := uint64(1); id <= 500; id++ {
		e := logEntry(id, t0.Add(time.Duration(id)*time.Second), 1000, shared.ActionAllow)
		switch {
		case id == 3 || id == 250:
			e.Connection.Exe, e.Connection.Hosts = "/usr/bin/wget", []string{"a.test", "b.test"}
		case id == 4:
			e.Connection.Exe, e.Connection.ExeClaimed, e.Connection.Unit = "", "/usr/bin/wget", "a.test"
		case id == 5:
			e.Connection.Hosts = []string{"a.test.example"}
		}
		es = append(es, e)
	}
	if err := s.AppendLog(es); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		f    LogFilter
		want []uint64
	}{
		"exe":             {LogFilter{Exe: "/usr/bin/wget"}, []uint64{250, 3}},
		"exe, limit":      {LogFilter{Exe: "/usr/bin/wget", Limit: 1}, []uint64{250}},
		"host":            {LogFilter{Host: "a.test"}, []uint64{250, 3}},
		"host and exe":    {LogFilter{Host: "b.test", Exe: "/usr/bin/wget", Since: t0.Add(100 * time.Second)}, []uint64{250}},
		"exe, no such":    {LogFilter{Exe: "/usr/bin/w"}, nil},
		"host, no such":   {LogFilter{Host: "test"}, nil},
		"host and action": {LogFilter{Host: "a.test", Action: shared.ActionDeny}, nil},
	} {
		t.Run(name, func(t *testing.T) { wantLogIDs(t, s, c.f, c.want) })
	}
}

// wantLogIDs checks the ids of what s.Log(f) returns, in order.
func wantLogIDs(t *testing.T, s *Store, f LogFilter, want []uint64) {
	t.Helper()
	got, err := s.Log(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids(got), want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("ids %v, want %v", ids(got), want)
	}
}
