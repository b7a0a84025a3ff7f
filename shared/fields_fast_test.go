package shared

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
	"unsafe"
)

// fastSeeds are JSON rules of every shape: as MarshalJSON writes them, and
// the looser forms the general path reads (or refuses).
func fastSeeds() [][]byte {
	full, _ := json.Marshal(fullRule())
	return [][]byte{
		full,
		[]byte(`{"action":"allow","created":"2026-01-02T03:04:05.123456789Z","enabled":true,"exe":"/usr/lib/app1/bin/app1","id":"i-0011223344556677","lifetime":"forever","name":"r1","port":"443","proto":"tcp","source":"store","updated":"2026-01-02T03:04:05Z"}`),
		[]byte(`{"action":"allow","exe":"/usr/bin/curl","port":443,"host":"*.Example.org."}`),
		[]byte(`{"action":"deny","lifetime":"until","until":"2030-01-01T00:00:00Z","ip":"10.1.2.3/8","uid":1000.0}`),
		[]byte(`{"action":"reject","hits":18446744073709551615,"local_port":"1-65535","enabled":false}`),
		[]byte(`{"owner":"root","priority":-2147483648}`),
		[]byte(` { "note" : "a \"quoted\"\nnote \u00e9\ud83d\ude00" , "name":"caf\u00e9 ☕" } `),
		[]byte(`{"id":"a","id":"b"}`),
		[]byte(`{"action":"Allow"}`),
		[]byte(`{"unknown":1}`),
		[]byte(`{"owner":"1000","uid":"0"}`),
		[]byte(`{"pid":01}`),
		[]byte(`{"pid":-0,"hits":-1}`),
		[]byte(`{"until":1700000000,"created":-62135596801}`),
		[]byte(`{"enabled":null}`),
		[]byte(`{"port":[443]}`),
		[]byte(`{"name":"x"} trailing`),
		[]byte(`{"name":"bad utf8 ` + "\xff" + `"}`),
		[]byte(`{"a\u0063tion":"deny"}`),
		[]byte(`{"action":"d\u0065ny"}`),
		[]byte(`{}`),
		[]byte(`[]`),
		[]byte(`{"name":"x",}`),
		[]byte(`{"enabled":truex}`),
		[]byte(`{"priority":1e3}`),
	}
}

// decodeBoth decodes data by the fast path (when it takes it) and by the
// general one, and fails the test when they disagree.
func decodeBoth(t *testing.T, data []byte) {
	t.Helper()
	slow, slowErr := decodeRuleGeneral(data)
	fast, ok := decodeRuleFast(data)
	if !ok {
		return
	}
	if slowErr != nil {
		t.Fatalf("%q: the fast path decoded what the general path refuses (%v): %+v", data, slowErr, fast)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: fast and general paths differ:\nfast    %+v\ngeneral %+v", data, fast, slow)
	}
}

func TestDecodeRuleFastAgreesWithGeneral(t *testing.T) {
	for _, s := range fastSeeds() {
		decodeBoth(t, s)
	}
}

// TestDecodeRuleFastTakesTheStoredForm: what MarshalJSON writes takes the
// fast path, and its enumerated values are the package's constants (one
// string shared by every rule, not one per rule).
func TestDecodeRuleFastTakesTheStoredForm(t *testing.T) {
	r := fullRule()
	r.Note = "line 1\nline \"2\" é"
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeRuleFast(data)
	if !ok {
		t.Fatalf("fast path refused %s", data)
	}
	want := r
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	plain := []byte(`{"action":"allow","lifetime":"forever","proto":"tcp","direction":"out","source":"store","id":"x"}`)
	got, ok = decodeRuleFast(plain)
	if !ok {
		t.Fatal("fast path refused a plain rule")
	}
	for _, s := range []string{string(got.Action), string(got.Lifetime), string(got.Match.Proto), string(got.Match.Direction), got.Source} {
		if !isConstant(s) {
			t.Errorf("%q is not the package's constant", s)
		}
	}
}

func isConstant(s string) bool {
	for _, c := range []string{"allow", "forever", "tcp", "out", "store"} {
		if s == c {
			return sameString(s, c)
		}
	}
	return false
}

// sameString reports whether a and b are one string in memory.
func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

func TestUnmarshalJSONFallsBack(t *testing.T) {
	// Forms only the general path reads still decode.
	var r Rule
	if err := json.Unmarshal([]byte(`{"id":"a","id":"b","priority":2.0,"until":"2030-01-01T00:00:00+02:00"}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.ID != "b" || r.Priority != 2 || !r.Until.Equal(time.Date(2029, 12, 31, 22, 0, 0, 0, time.UTC)) {
		t.Fatalf("got %+v", r)
	}
	// And errors are the general path's.
	err := json.Unmarshal([]byte(`{"action":"maybe"}`), &r)
	if fe, ok := err.(*FieldError); !ok || fe.Field != "action" {
		t.Fatalf("error %v (%T), want a FieldError for action", err, err)
	}
}

func FuzzDecodeRuleFast(f *testing.F) {
	for _, s := range fastSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeBoth(t, data)
	})
}

func BenchmarkUnmarshalRule(b *testing.B) {
	data := []byte(`{"action":"allow","created":"2026-01-02T03:04:05.123456789Z","enabled":true,"exe":"/usr/lib/app1/bin/app1","id":"i-0011223344556677","lifetime":"forever","name":"r1","port":"443","proto":"tcp","source":"store","updated":"2026-01-02T03:04:05Z"}`)
	for _, path := range []string{"fast", "general"} {
		b.Run(path, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if path == "fast" {
					var r Rule
					err = r.UnmarshalJSON(data)
				} else {
					_, err = decodeRuleGeneral(data)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
