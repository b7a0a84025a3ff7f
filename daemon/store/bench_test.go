package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// Run: go test -run '^$' -bench . -benchtime 2s ./daemon/store/

func BenchmarkPutRule(b *testing.B) {
	s := openT(b, Options{Path: dbPath(b)})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.PutRule(fullRule(fmt.Sprintf("rule-%08d", i))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkAppendLog100(b *testing.B) {
	s := openT(b, Options{Path: dbPath(b), MaxLogEntries: 100_000})
	batch := entries(1, 100)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.AppendLog(batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendLog100Full appends to a log already at its bound, so every
// batch also trims 100 entries.
func BenchmarkAppendLog100Full(b *testing.B) {
	s := openT(b, Options{Path: dbPath(b), MaxLogEntries: 10_000})
	for i := 0; i < 10_000; i += 1000 {
		if err := s.AppendLog(entries(uint64(i), 1000)); err != nil {
			b.Fatal(err)
		}
	}
	batch := entries(1, 100)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.AppendLog(batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLogByExe100k looks for the newest 100 connections of an
// executable that made none of the newest 99,000 in a full log of
// 100,000 (`tollgate log --exe PATH`): a walk of the whole log.
func BenchmarkLogByExe100k(b *testing.B) {
	s := openT(b, Options{Path: dbPath(b), MaxLogEntries: 100_000})
	for i := 0; i < 100_000; i += 1000 {
		batch := entries(uint64(i), 1000)
		if i == 0 {
			for j := range batch {
				batch[j].Connection.Exe = "/usr/bin/rare"
			}
		}
		if err := s.AppendLog(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.Log(LogFilter{Exe: "/usr/bin/rare", Limit: 100})
		if err != nil || len(got) != 100 {
			b.Fatal(len(got), err)
		}
	}
}

func storeWithRules(b *testing.B, n int) string {
	b.Helper()
	path := dbPath(b)
	s, err := Open(Options{Path: path}, nil)
	if err != nil {
		b.Fatal(err)
	}
	rs := make([]shared.Rule, n)
	for i := range rs {
		rs[i] = smallRule(fmt.Sprintf("%016x", uint64(i)*0x9E3779B97F4A7C15)) // random-looking IDs
		rs[i].Note = "allowed when asked"
	}
	if err := s.PutRules(rs); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

func BenchmarkRules100k(b *testing.B) {
	s := openT(b, Options{Path: storeWithRules(b, 100_000)})
	b.ReportAllocs()
	for b.Loop() {
		rules, _, err := s.Rules()
		if err != nil || len(rules) != 100_000 {
			b.Fatal(len(rules), err)
		}
	}
}

// BenchmarkStartup100k is what the daemon does at start: open (inspect,
// structure check, reopen read-write) and load every rule.
func BenchmarkStartup100k(b *testing.B) {
	path := storeWithRules(b, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		s, err := Open(Options{Path: path, MaxLogEntries: 1000}, nil)
		if err != nil {
			b.Fatal(err)
		}
		rules, _, err := s.Rules()
		if err != nil || len(rules) != 100_000 {
			b.Fatal(len(rules), err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckFile100k(b *testing.B) {
	path := storeWithRules(b, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		if err := checkPath(path, 4096); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLogFiltered reads one user's newest 100 entries out of 100k,
// where that user made one connection in ten.
func BenchmarkLogFiltered(b *testing.B) {
	s := openT(b, Options{Path: dbPath(b), MaxLogEntries: 100_000})
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 100_000; i += 10_000 {
		batch := make([]shared.LogEntry, 10_000)
		for j := range batch {
			id := uint64(i + j)
			batch[j] = logEntry(id, at.Add(time.Duration(id)*time.Millisecond), 1000+int64(id%10), shared.ActionAllow)
		}
		if err := s.AppendLog(batch); err != nil {
			b.Fatal(err)
		}
	}
	uid := int64(1003)
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.Log(LogFilter{UID: &uid, Limit: 100})
		if err != nil || len(got) != 100 {
			b.Fatal(len(got), err)
		}
	}
}

// BenchmarkPutRules100k stores 100k rules with random-looking IDs in one
// transaction (an import), into an empty store.
func BenchmarkPutRules100k(b *testing.B) {
	rs := make([]shared.Rule, 100_000)
	for i := range rs {
		rs[i] = smallRule(fmt.Sprintf("i-%016x", uint64(i)*0x9E3779B97F4A7C15))
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s := openT(b, Options{Path: dbPath(b)})
		b.StartTimer()
		if err := s.PutRules(rs); err != nil {
			b.Fatal(err)
		}
	}
}
