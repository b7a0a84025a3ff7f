package rulemodel

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// sharedErr is what the shared decoder and validator say about a field map:
// the form must show exactly that.
func sharedErr(t *testing.T, fields map[string]any) string {
	t.Helper()
	r, err := shared.RuleFromFields(fields)
	if err == nil {
		r.Normalize()
		err = r.Validate()
	}
	if err == nil {
		t.Fatalf("shared accepts %v", fields)
	}
	return err.Error()
}

func TestFormRejects(t *testing.T) {
	valid := Form{Action: "allow", Lifetime: "forever", Exe: "/usr/bin/curl", Enabled: true}
	tests := []struct {
		name  string
		edit  func(*Form)
		field string
		same  map[string]any // the shared validator's view of the same mistake
	}{
		{"port out of range", func(f *Form) { f.Port = "99999" }, "port",
			map[string]any{"action": "allow", "port": "99999"}},
		{"port range reversed", func(f *Form) { f.Port = "90-80" }, "port",
			map[string]any{"action": "allow", "port": "90-80"}},
		{"action missing", func(f *Form) { f.Action = "" }, "action",
			map[string]any{"lifetime": "forever"}},
		{"bad ip", func(f *Form) { f.IP = "300.1.1.1" }, "ip",
			map[string]any{"action": "allow", "ip": "300.1.1.1"}},
		{"ip in host", func(f *Form) { f.Host = "192.0.2.1" }, "host",
			map[string]any{"action": "allow", "host": "192.0.2.1"}},
		{"relative exe", func(f *Form) { f.Exe = "curl" }, "exe",
			map[string]any{"action": "allow", "exe": "curl"}},
		{"until without time", func(f *Form) { f.Lifetime = "until" }, "until",
			map[string]any{"action": "allow", "lifetime": "until"}},
		{"until not a time", func(f *Form) { f.Lifetime, f.Until = "until", "tomorrow" }, "until",
			map[string]any{"action": "allow", "lifetime": "until", "until": "tomorrow"}},
		{"bad proto", func(f *Form) { f.Proto = "sctp" }, "proto",
			map[string]any{"action": "allow", "proto": "sctp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := valid
			tc.edit(&f)
			_, err := f.Rule(shared.Rule{Owner: me})
			if err == nil {
				t.Fatal("form accepted")
			}
			if FieldOf(err) != tc.field {
				t.Errorf("error %q is about %q, want %q", err, FieldOf(err), tc.field)
			}
			if want := sharedErr(t, tc.same); err.Error() != want {
				t.Errorf("message %q, want the validator's %q", err, want)
			}
		})
	}
}

func TestFormRule(t *testing.T) {
	until := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	uid := uint32(me)
	tests := []struct {
		name string
		base shared.Rule
		form Form
		want shared.Rule
	}{
		{
			name: "new rule",
			base: shared.Rule{Owner: me},
			form: Form{Name: "curl to example", Action: "allow", Lifetime: "forever", Exe: "/usr/bin/curl",
				Host: "Example.ORG.", Port: "443", Proto: "tcp", Direction: "out", Enabled: true},
			want: shared.Rule{Name: "curl to example", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: me, Enabled: true,
				Match: shared.Match{Exe: "/usr/bin/curl", Host: "example.org", Port: shared.PortRange{Lo: 443, Hi: 443},
					Proto: shared.ProtoTCP, Direction: shared.DirectionOut}},
		},
		{
			name: "ip, port range, until, disabled",
			base: shared.Rule{Owner: me},
			form: Form{Action: "deny", Lifetime: "until", Until: "2026-05-01T12:00:00+02:00", IP: "10.1.2.3/8", Port: "8000-8100",
				LocalPort: "5000"},
			want: shared.Rule{Action: shared.ActionDeny, Lifetime: shared.LifetimeUntil, Until: until, Owner: me,
				Match: shared.Match{IP: netip.MustParsePrefix("10.0.0.0/8"), Port: shared.PortRange{Lo: 8000, Hi: 8100},
					LocalPort: shared.PortRange{Lo: 5000, Hi: 5000}}},
		},
		{
			name: "edit keeps fields the form does not show, drops bookkeeping, clears emptied ones",
			base: shared.Rule{ID: "r9", Name: "old", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: me, Enabled: true,
				Priority: 7, Match: shared.Match{Exe: "/usr/bin/python3", Cmdline: "python3 -m http.server", UID: &uid,
					Host: "old.example", Port: shared.PortRange{Lo: 80, Hi: 80}},
				Hits: 9, Source: "store", Created: until},
			form: Form{Name: "new", Action: "reject", Lifetime: "session", Exe: "/usr/bin/python3", Enabled: true},
			want: shared.Rule{ID: "r9", Name: "new", Action: shared.ActionReject, Lifetime: shared.LifetimeSession, Owner: me, Enabled: true,
				Priority: 7, Match: shared.Match{Exe: "/usr/bin/python3", Cmdline: "python3 -m http.server", UID: &uid}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.form.Rule(tc.base)
			if err != nil {
				t.Fatalf("Rule: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rule\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestFormRoundTrip(t *testing.T) {
	for _, r := range testRules() {
		if r.ReadOnly {
			continue
		}
		r.Hits, r.LastHit = 0, time.Time{}
		f := FormFromRule(r, time.UTC)
		got, err := f.Rule(r)
		if err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", r.ID, got, r)
		}
	}
	until := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	f := FormFromRule(shared.Rule{Action: shared.ActionAllow, Lifetime: shared.LifetimeUntil, Until: until}, time.FixedZone("x", 7200))
	if f.Until != "2026-05-01T12:00:00+02:00" {
		t.Errorf("Until shown as %q", f.Until)
	}
	if FormFromRule(shared.Rule{}, nil).Lifetime != "forever" {
		t.Error("a new rule's lifetime is not forever")
	}
}

func TestFieldOf(t *testing.T) {
	if FieldOf(errors.New("x")) != "" {
		t.Error("plain error has a field")
	}
	if FieldOf(&shared.FieldError{Field: "port"}) != "port" {
		t.Error("FieldError field lost")
	}
}

func TestLifetimes(t *testing.T) {
	if got := Lifetimes(shared.Rule{}); !reflect.DeepEqual(got, []string{"forever", "session", "until"}) {
		t.Errorf("new rule lifetimes %v", got)
	}
	if got := Lifetimes(shared.Rule{Lifetime: shared.LifetimeProcess}); got[len(got)-1] != "process" {
		t.Errorf("process rule lifetimes %v", got)
	}
}

func TestFormProcessLifetimeRefused(t *testing.T) {
	base := shared.Rule{ID: "p", Action: shared.ActionAllow, Lifetime: shared.LifetimeProcess, Owner: me, PID: 42, PIDStart: 7,
		Enabled: true, Match: shared.Match{Exe: "/usr/bin/curl"}}
	f := FormFromRule(base, time.UTC)
	if _, err := f.Rule(base); FieldOf(err) != "lifetime" {
		t.Fatalf("process rule saved as it is: err %v, want a lifetime error", err)
	}
	f.Lifetime = "forever"
	r, err := f.Rule(base)
	if err != nil {
		t.Fatalf("process rule made forever: %v", err)
	}
	if r.Lifetime != shared.LifetimeForever || r.PID != 0 || r.Owner != me {
		t.Errorf("made forever: lifetime %s pid %d owner %d", r.Lifetime, r.PID, r.Owner)
	}
}

func TestFormSystemRule(t *testing.T) {
	base := shared.Rule{Owner: me, Enabled: true, Lifetime: shared.LifetimeForever}
	f := FormFromRule(base, time.UTC)
	if f.System {
		t.Fatal("a user's new rule starts as a system rule")
	}
	f.Action, f.Port, f.System = "deny", "23", true
	r, err := f.Rule(base)
	if err != nil {
		t.Fatal(err)
	}
	if r.Owner != shared.OwnerSystem {
		t.Fatalf("owner %d, want system", r.Owner)
	}
	fields := WritableFields(r)
	if fields["owner"] != "system" {
		t.Errorf("owner field %v, want \"system\" (left out, the daemon would make it the caller's)", fields["owner"])
	}
	back, err := shared.RuleFromFields(fields)
	if err != nil || back.Owner != shared.OwnerSystem || back.Action != shared.ActionDeny || back.Match.Port.Lo != 23 {
		t.Errorf("fields read back: %+v, %v", back, err)
	}
	for k := range fields {
		if shared.IsBookkeepingField(k) || k == "id" {
			t.Errorf("field %q sent", k)
		}
	}
	if FormFromRule(r, time.UTC).System != true {
		t.Error("a system rule's form does not say system")
	}
	mine := WritableFields(shared.Rule{ID: "x", Owner: me, Action: shared.ActionAllow, Hits: 3})
	if mine["owner"] != uint32(me) || mine["id"] != nil || mine["hits"] != nil {
		t.Errorf("user rule fields %v", mine)
	}
}
