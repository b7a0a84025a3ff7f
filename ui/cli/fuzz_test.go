package cli

import (
	"strings"
	"testing"
	"time"
)

// FuzzRulesAdd feeds arbitrary command lines (arguments split at NUL) to
// `rules add`: it never panics, exits 0 or 2, and a rule it sends is one
// shared's validator accepts.
func FuzzRulesAdd(f *testing.F) {
	for _, seed := range []string{
		"--action\x00allow\x00--exe\x00/usr/bin/curl\x00--host\x00example.org\x00--port\x00443\x00--proto\x00tcp",
		"--action=deny\x00--ip\x0010.0.0.0/8\x00--port\x008000-8100\x00--until\x002h",
		"--action\x00allow\x00--uid\x00root\x00--owner\x00system\x00--priority\x00-3",
		"--action\x00reject\x00--host\x00*.Example.ORG.\x00--lifetime\x00until\x00--until\x002026-12-01 10:00",
		"--port\x00",
		"--\x00--action",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		h := newHarness()
		args := append([]string{"rules", "add"}, strings.Split(line, "\x00")...)
		r := h.run(t, args...)
		switch r.code {
		case ExitOK:
			if strings.HasPrefix(r.stdout, "Usage: tollgate rules add") {
				return // -h
			}
			if len(h.fake.rules) != 1 {
				t.Fatalf("exit 0 but %d rules stored", len(h.fake.rules))
			}
			rule := h.fake.rules[0]
			rule.ID = ""
			if err := rule.Validate(); err != nil {
				t.Fatalf("stored rule does not validate: %v", err)
			}
		case ExitUsage:
			if len(h.fake.rules) != 0 {
				t.Fatalf("exit 2 but a rule was stored")
			}
		default:
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
}

// FuzzParseWhen: any text is a time or an error, never a panic, and a
// duration is never counted the wrong way.
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"2h", "+90m", "3d", "2026-11-21 06:00", "2026-11-21T06:00:00Z", "", "99999d", "-1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fut, err := parseWhen(s, testNow, time.UTC, true)
		if err != nil {
			return
		}
		past, err := parseWhen(s, testNow, time.UTC, false)
		if err != nil {
			t.Fatalf("%q parses forward but not back: %v", s, err)
		}
		if !fut.Equal(past) && (fut.Before(testNow) || past.After(testNow)) {
			t.Fatalf("%q: duration counted the wrong way: %v / %v", s, fut, past)
		}
	})
}
