package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tollgate-fw/tollgate/shared"
)

// The connection log: key = big-endian uint64 from the bucket's NextSequence,
// so keys sort in append order and the oldest entries are at the front, where
// trimming deletes them cheaply. Value = a fixed header with the fields
// filters look at, then json.Marshal(shared.LogEntry):
//
//	byte 0        record format (logFormat)
//	bytes 1..8    Connection.Time, Unix nanoseconds (int64, big-endian; MinInt64 for the zero time)
//	bytes 9..16   Connection.UID (int64, big-endian)
//	byte 17       n = len(Verdict.Action)
//	bytes 18..    Verdict.Action (n bytes), then the JSON
//
// so a filtered read skips non-matching entries without decoding JSON.
const (
	logFormat     = 1
	logHeaderSize = 18
)

// LogFilter selects connection log entries. The zero value selects all.
type LogFilter struct {
	Limit  int           // at most this many (the newest); <= 0: no limit
	Since  time.Time     // only connections at or after this time; zero: any
	UID    *int64        // only this user's connections (Connection.UID); nil: everyone's
	Action shared.Action // only this verdict action; "": any
	Exe    string        // only connections of this executable (exact); "": any
	Host   string        // only connections to this host name (one of Hosts, exact); "": any
}

// AppendLog appends entries (oldest first, as they happened) in one
// transaction. The daemon buffers entries and calls this in batches.
//
// The log keeps the newest MaxLogEntries entries: readers never see more.
// The bucket itself may hold up to 1/16 more (trimSlack), so that the oldest
// are deleted in runs of that many, not a few with every batch: a deletion
// rewrites the first leaf page and its parents, which for small batches
// cost as much as the appending.
//
// Every commit is synced (bbolt's fsync), like the rules' commits: the log
// shares the file with the rules, and an unsynced commit can leave, after a
// power loss, a meta page that points at pages never written (bbolt orders
// its writes with those syncs), which would make the whole file, rules
// included, unreadable. The daemon keeps the cost down by appending in few,
// large batches instead.
func (s *Store) AppendLog(entries []shared.LogEntry) error {
	if s.maxLog == 0 || len(entries) == 0 {
		return nil
	}
	if len(entries) > s.maxLog {
		entries = entries[len(entries)-s.maxLog:]
	}
	// One buffer for every record (bbolt keeps the values until the
	// commit); a record of the daemon's is 300-600 bytes.
	buf := make([]byte, 0, len(entries)*512)
	ends := make([]int, len(entries))
	for i := range entries {
		var err error
		if buf, err = appendLogRecord(buf, &entries[i]); err != nil {
			return fmt.Errorf("append to connection log: entry %d: %w", i, err)
		}
		ends[i] = len(buf)
	}
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketLog)
		b.FillPercent = 1.0 // append-only: full pages, no splits in the middle
		keys := make([]byte, 8*len(ends))
		start := 0
		for i, end := range ends {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			k := keys[8*i : 8*i+8]
			binary.BigEndian.PutUint64(k, seq)
			if err := b.Put(k, buf[start:end:end]); err != nil {
				return err
			}
			start = end
		}
		if !logOverBound(b, s.maxLog+trimSlack(s.maxLog)) {
			return nil
		}
		return trimLog(b, s.maxLog)
	})
	if err != nil {
		return fmt.Errorf("append %d entries to connection log in %s: %w", len(ends), s.path, err)
	}
	return nil
}

// trimSlack is how far past its bound of max entries the log's bucket may
// grow before AppendLog trims it back to max.
func trimSlack(max int) int { return max / 16 }

// trimLog deletes the oldest entries until at most max remain. Keys are
// consecutive sequence numbers, so the count is the last sequence number
// minus the first key plus one; a key that is not a sequence number, or a
// nested bucket (neither is ours), is dropped as part of trimming.
func trimLog(b *bbolt.Bucket, max int) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if !frontOverBound(b, k, v, max) {
			return nil
		}
		var err error
		if v == nil { // a nested bucket: not something the log ever holds
			err = b.DeleteBucket(k)
		} else {
			err = c.Delete()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// logOverBound reports whether trimLog would delete anything.
func logOverBound(b *bbolt.Bucket, max int) bool {
	k, v := b.Cursor().First()
	return k != nil && frontOverBound(b, k, v, max)
}

// frontOverBound reports whether the first record, k and v, must go.
func frontOverBound(b *bbolt.Bucket, k, v []byte, max int) bool {
	if len(k) != 8 || v == nil {
		return true
	}
	first, last := binary.BigEndian.Uint64(k), b.Sequence()
	return first > last || last-first >= uint64(max)
}

// appendLogRecord appends the record of e (header and JSON) to dst.
func appendLogRecord(dst []byte, e *shared.LogEntry) ([]byte, error) {
	action := e.Verdict.Action
	if len(action) > math.MaxUint8 {
		return dst, fmt.Errorf("verdict action of %d bytes", len(action))
	}
	n0 := len(dst)
	dst = append(dst, logFormat)
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(e.Connection.Time)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Connection.UID))
	dst = append(dst, byte(len(action)))
	dst = append(dst, action...)
	n1 := len(dst)
	dst, ok := appendLogJSON(dst, e)
	if !ok {
		// A time RFC 3339 cannot say: json.Marshal has the error.
		js, err := marshalLogJSON(e)
		if err != nil {
			return dst[:n0], err
		}
		dst = append(dst[:n1], js...)
	}
	return dst, nil
}

func encodeLogEntry(e *shared.LogEntry) ([]byte, error) { return appendLogRecord(nil, e) }

// logHeader is the filterable part of a log record.
type logHeader struct {
	time   int64
	uid    int64
	action []byte
	json   []byte
}

var errLogRecord = errors.New("malformed log record")

func parseLogHeader(v []byte) (logHeader, error) {
	if len(v) < logHeaderSize || v[0] != logFormat {
		return logHeader{}, errLogRecord
	}
	n := int(v[17])
	if len(v) < logHeaderSize+n {
		return logHeader{}, errLogRecord
	}
	return logHeader{
		time:   int64(binary.BigEndian.Uint64(v[1:])),
		uid:    int64(binary.BigEndian.Uint64(v[9:])),
		action: v[logHeaderSize : logHeaderSize+n],
		json:   v[logHeaderSize+n:],
	}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	// UnixNano is undefined outside 1678..2262; clamp so ordering holds.
	switch {
	case t.Before(time.Unix(0, math.MinInt64+1)):
		return math.MinInt64 + 1
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func (f *LogFilter) match(h logHeader, since int64) bool {
	if h.time < since {
		return false
	}
	if f.UID != nil && h.uid != *f.UID {
		return false
	}
	if f.Action != "" && string(h.action) != string(f.Action) {
		return false
	}
	return true
}

// Log returns the connection log entries that f selects, newest first,
// from the newest MaxLogEntries.
// Records that do not parse (a damaged file) are skipped and counted in a
// warning: the log is a bounded history, not a record to repair.
func (s *Store) Log(f LogFilter) ([]shared.LogEntry, error) {
	since := int64(math.MinInt64)
	if !f.Since.IsZero() {
		since = unixNano(f.Since)
	}
	// Records that cannot hold the exe or host asked for are passed over
	// without decoding: their JSON lacks the encoded string.
	var wantExe, wantHost []byte
	if f.Exe != "" {
		wantExe = appendJSONString([]byte(`"exe":`), f.Exe)
	}
	if f.Host != "" {
		wantHost = appendJSONString(nil, f.Host)
	}
	var out []shared.LogEntry
	skipped := 0
	// The bucket may hold up to trimSlack entries past the bound: only the
	// newest maxLog are the log (a read-only store, maxLog 0, shows all).
	left := s.maxLog
	if left <= 0 {
		left = math.MaxInt
	}
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Last(); k != nil && left > 0; k, v = c.Prev() {
			left--
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
			h, err := parseLogHeader(v)
			if err != nil {
				skipped++
				continue
			}
			if !f.match(h, since) || (wantExe != nil && !bytes.Contains(h.json, wantExe)) ||
				(wantHost != nil && !bytes.Contains(h.json, wantHost)) {
				continue
			}
			var e shared.LogEntry
			if err := json.Unmarshal(h.json, &e); err != nil {
				skipped++
				continue
			}
			if (f.Exe != "" && e.Connection.Exe != f.Exe) || (f.Host != "" && !slices.Contains(e.Connection.Hosts, f.Host)) {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read connection log from %s: %w", s.path, err)
	}
	if skipped > 0 {
		s.log.Warn("store: malformed connection log records skipped", "path", s.path, "count", skipped)
	}
	return out, nil
}
