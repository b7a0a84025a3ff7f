package shared

import (
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func fullRule() Rule {
	return Rule{
		ID:       "rules.d/base.toml:ssh",
		Name:     "ssh",
		Action:   ActionReject,
		Lifetime: LifetimeUntil,
		Until:    time.Date(2030, 5, 6, 7, 8, 9, 123000000, time.UTC),
		Owner:    1000,
		Enabled:  false,
		Priority: 7,
		Note:     "a note",
		Match: Match{
			Exe:       "/usr/bin/ssh",
			ExeSHA256: strings.Repeat("0f", 32),
			Cmdline:   "ssh *",
			Unit:      "user@1000.service",
			UID:       u32(1000),
			GID:       u32(0),
			Direction: DirectionOut,
			Proto:     ProtoTCP,
			Host:      "*.example.org",
			IP:        netip.MustParsePrefix("10.0.0.0/8"),
			Port:      PortRange{22, 22},
			LocalPort: PortRange{1024, 65535},
			Iface:     "eth0",
		},
		PID:      321,
		PIDStart: 1 << 40,
		Session:  ":1.7",
		Source:   "store",
		ReadOnly: true,
		Created:  time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		Updated:  time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC),
		Hits:     math.MaxUint64,
		LastHit:  time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC),
	}
}

func TestFieldsEncoding(t *testing.T) {
	r := fullRule()
	f := r.Fields()
	want := map[string]any{
		"id": "rules.d/base.toml:ssh", "name": "ssh", "action": "reject", "lifetime": "until",
		"until": "2030-05-06T07:08:09.123Z", "owner": uint32(1000), "enabled": false,
		"priority": int32(7), "note": "a note",
		"exe": "/usr/bin/ssh", "exe_sha256": strings.Repeat("0f", 32), "cmdline": "ssh *",
		"unit": "user@1000.service", "uid": uint32(1000), "gid": uint32(0), "direction": "out",
		"proto": "tcp", "host": "*.example.org", "ip": "10.0.0.0/8", "port": "22",
		"local_port": "1024-65535", "iface": "eth0",
		"pid": int32(321), "pid_start": uint64(1 << 40), "session": ":1.7", "source": "store",
		"read_only": true, "created": "2024-01-01T00:00:00Z", "updated": "2024-02-01T00:00:00Z",
		"hits": uint64(math.MaxUint64), "last_hit": "2024-03-01T00:00:00Z",
	}
	if !reflect.DeepEqual(f, want) {
		for k := range want {
			if !reflect.DeepEqual(f[k], want[k]) {
				t.Errorf("field %s = %#v, want %#v", k, f[k], want[k])
			}
		}
		for k := range f {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected field %s", k)
			}
		}
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	all := FieldNames()
	slices.Sort(all)
	if !slices.Equal(keys, all) {
		t.Errorf("a full rule encodes fields %v, want every field %v", keys, all)
	}

	// Only set fields (and enabled).
	minimal := Rule{Action: ActionAllow, Enabled: true}
	if got := minimal.Fields(); !reflect.DeepEqual(got, map[string]any{"action": "allow", "enabled": true}) {
		t.Errorf("minimal rule fields %#v", got)
	}

	back, err := RuleFromFields(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Fields(), f) {
		t.Errorf("round trip changed fields:\n%#v\n%#v", back.Fields(), f)
	}
	if !back.Until.Equal(r.Until) || *back.Match.UID != 1000 || back.Hits != math.MaxUint64 {
		t.Errorf("round trip lost values: %+v", back)
	}
}

func TestRuleFromFieldsLooseTypes(t *testing.T) {
	until := time.Date(2031, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 7200))
	in := map[string]any{
		"action":     "deny",
		"lifetime":   "until",
		"until":      until, // TOML datetime
		"owner":      "root",
		"priority":   int64(-3),     // TOML integer
		"uid":        float64(1000), // JSON number
		"gid":        json.Number("100"),
		"port":       int64(443),
		"local_port": "8000-8100",
		"pid":        uint8(7),
		"pid_start":  json.Number("18446744073709551615"),
		"hits":       int32(5),
		"created":    int64(1700000000),
		"ip":         "192.0.2.1",
	}
	r, err := RuleFromFields(in)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Enabled {
		t.Error("absent enabled did not mean true")
	}
	if r.Owner != OwnerSystem || r.Priority != -3 || *r.Match.UID != 1000 || *r.Match.GID != 100 {
		t.Errorf("numbers: %+v", r)
	}
	if r.Match.Port != (PortRange{443, 443}) || r.Match.LocalPort != (PortRange{8000, 8100}) {
		t.Errorf("ports %v %v", r.Match.Port, r.Match.LocalPort)
	}
	if r.PID != 7 || r.PIDStart != math.MaxUint64 || r.Hits != 5 {
		t.Errorf("bookkeeping %+v", r)
	}
	if !r.Until.Equal(until) || r.Until.Location() != time.UTC {
		t.Errorf("until %v", r.Until)
	}
	if !r.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("created %v", r.Created)
	}
	if r.Match.IP != netip.MustParsePrefix("192.0.2.1/32") {
		t.Errorf("ip %v", r.Match.IP)
	}
	for owner, want := range map[any]uint32{"system": 0, "1000": 1000, int64(1000): 1000, uint32(5): 5} {
		r, err := RuleFromFields(map[string]any{"owner": owner})
		if err != nil || r.Owner != want {
			t.Errorf("owner %#v: %d, %v", owner, r.Owner, err)
		}
	}
}

func TestRuleFromFieldsErrors(t *testing.T) {
	tests := []struct {
		field string
		value any
	}{
		{"colour", "red"},
		{"action", "accept"},
		{"action", 1},
		{"lifetime", true},
		{"until", "tomorrow"},
		{"until", 1.5},
		{"until", int64(math.MaxInt64)},
		{"owner", "alice"},
		{"owner", int64(-1)},
		{"owner", int64(math.MaxUint32 + 1)},
		{"enabled", "yes"},
		{"priority", int64(math.MaxInt32 + 1)},
		{"priority", 1.5},
		{"priority", "1"},
		{"note", 5},
		{"exe", []string{"/bin/sh"}},
		{"uid", -1},
		{"uid", "1000"},
		{"gid", nil},
		{"direction", "both"},
		{"proto", "sctp"},
		{"host", 1},
		{"ip", "10.0.0.0/33"},
		{"port", "0"},
		{"port", int64(0)},
		{"port", int64(65536)},
		{"port", "22-21"},
		{"local_port", 2.5},
		{"iface", false},
		{"pid", int64(-4)},
		{"pid_start", int64(-1)},
		{"pid_start", "1"},
		{"read_only", 1},
		{"hits", json.Number("1e400")},
		{"hits", json.Number("x")},
		{"created", map[string]any{}},
	}
	for _, tt := range tests {
		_, err := RuleFromFields(map[string]any{"action": "allow", tt.field: tt.value})
		if tt.field == "action" {
			_, err = RuleFromFields(map[string]any{tt.field: tt.value})
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s = %#v: error %v, want a FieldError for %q", tt.field, tt.value, err, tt.field)
		}
	}
}

func TestRuleJSON(t *testing.T) {
	r := fullRule()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"local_port":"1024-65535"`) || !strings.Contains(string(data), `"exe_sha256":`) {
		t.Errorf("JSON does not use the shared names: %s", data)
	}
	var back Rule
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Fields(), r.Fields()) {
		t.Errorf("JSON round trip:\n%#v\n%#v", back.Fields(), r.Fields())
	}
	// Stable: encoding twice gives the same bytes.
	again, _ := json.Marshal(back)
	if string(again) != string(data) {
		t.Errorf("JSON not stable:\n%s\n%s", data, again)
	}

	// Rules inside other JSON values use the same form.
	var list []Rule
	if err := json.Unmarshal([]byte(`[{"action":"allow","port":443,"host":"example.org"}, null]`), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Match.Port != (PortRange{443, 443}) || list[0].Match.Host != "example.org" {
		t.Errorf("decoded %+v", list)
	}

	for _, bad := range []string{`{"action":"allow","bogus":1}`, `[1]`, `"x"`, `{"port":"x"}`, `{`} {
		var r Rule
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
	var fe *FieldError
	if err := json.Unmarshal([]byte(`{"port":"0"}`), &r); !errors.As(err, &fe) || fe.Field != "port" {
		t.Errorf("JSON field error not reachable with errors.As: %v", err)
	}
}

func TestLogEntryJSON(t *testing.T) {
	e := LogEntry{
		Connection: Connection{
			ID: 9, Time: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Direction: DirectionOut, Proto: ProtoTCP, ProtoNum: 6,
			LocalIP: netip.MustParseAddr("10.0.0.2"), LocalPort: 40000,
			RemoteIP: netip.MustParseAddr("192.0.2.7"), RemotePort: 443,
			UID: 1000, GID: -1, PID: 77, Exe: "/usr/bin/curl", Attribution: AttributedProcess,
			Hosts: []string{"example.org"},
		},
		Verdict: Verdict{Action: ActionAllow, RuleID: "3", Reason: "rule 3"},
	}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"connection":{"id":9,"time":"2024-01-01T00:00:00Z","direction":"out","proto":"tcp","proto_num":6,` +
		`"local_ip":"10.0.0.2","local_port":40000,"remote_ip":"192.0.2.7","remote_port":443,"uid":1000,"gid":-1,` +
		`"pid":77,"exe":"/usr/bin/curl","attribution":"process","hosts":["example.org"]},` +
		`"verdict":{"action":"allow","rule_id":"3","reason":"rule 3"}}`
	if string(data) != want {
		t.Errorf("LogEntry JSON\n got %s\nwant %s", data, want)
	}
	var back LogEntry
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Errorf("round trip\n got %+v\nwant %+v", back, e)
	}
	// Unset addresses and times are left out.
	data, _ = json.Marshal(LogEntry{Connection: Connection{UID: -1, GID: -1}, Verdict: Verdict{Action: ActionDeny}})
	if string(data) != `{"connection":{"uid":-1,"gid":-1},"verdict":{"action":"deny"}}` {
		t.Errorf("empty entry %s", data)
	}
}

// checkRoundTrip: a rule that decodes, normalizes and validates re-encodes
// to fields that decode to the same rule and the same fields again.
func checkRoundTrip(t *testing.T, r Rule) {
	t.Helper()
	r.Normalize()
	if r.Validate() != nil {
		return
	}
	f1 := r.Fields()
	r2, err := RuleFromFields(f1)
	if err != nil {
		t.Fatalf("re-decoding %#v: %v", f1, err)
	}
	if err := r2.Validate(); err != nil {
		t.Fatalf("re-decoded rule does not validate: %v (%#v)", err, f1)
	}
	if f2 := r2.Fields(); !reflect.DeepEqual(f1, f2) {
		t.Fatalf("fields changed:\n%#v\n%#v", f1, f2)
	}
	data, err := json.Marshal(r2)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var r3 Rule
	if err := json.Unmarshal(data, &r3); err != nil {
		t.Fatalf("unmarshal %s: %v", data, err)
	}
	if f3 := r3.Fields(); !reflect.DeepEqual(f1, f3) {
		t.Fatalf("JSON changed fields:\n%#v\n%#v", f1, f3)
	}
	if r.Match.Specificity() != r3.Match.Specificity() {
		t.Fatalf("specificity changed")
	}
}

func FuzzRuleFromFields(f *testing.F) {
	f.Add("allow", "forever", "/usr/bin/ssh", "*.example.org", "10.0.0.0/8", "22", int64(443), int64(1000), 0.0, "2030-01-01T00:00:00Z", uint8(0))
	f.Add("deny", "until", "/opt/*/bin", "Example.ORG.", "::ffff:1.2.3.4", "8000-8100", int64(0), int64(-1), 1e3, "2030-01-01T00:00:00+02:00", uint8(1))
	f.Add("reject", "", "", "", "", "", int64(70000), int64(1<<33), 22.5, "", uint8(2))
	f.Fuzz(func(t *testing.T, action, lifetime, exe, host, ip, port string, n1, n2 int64, fl float64, until string, kind uint8) {
		m := map[string]any{}
		put := func(k string, v string) {
			if v != "" {
				m[k] = v
			}
		}
		put("action", action)
		put("lifetime", lifetime)
		put("exe", exe)
		put("host", host)
		put("ip", ip)
		put("port", port)
		put("until", until)
		switch kind % 4 {
		case 0:
			m["local_port"] = n1
			m["uid"] = n2
		case 1:
			m["priority"] = fl
			m["owner"] = n1
		case 2:
			m["gid"] = json.Number(port)
			m["hits"] = fl
			m["created"] = n2
		case 3:
			m["pid"] = n1
			m["pid_start"] = n2
			m["enabled"] = kind&4 != 0
		}
		r, err := RuleFromFields(m)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			return
		}
		checkRoundTrip(t, r)
	})
}

func FuzzUnmarshalJSON(f *testing.F) {
	seed, _ := json.Marshal(fullRule())
	f.Add(seed)
	f.Add([]byte(`{"action":"allow","exe":"/usr/bin/curl","port":443,"host":"*.Example.org."}`))
	f.Add([]byte(`{"action":"deny","lifetime":"until","until":"2030-01-01T00:00:00Z","ip":"10.1.2.3/8","uid":1000.0}`))
	f.Add([]byte(`{"action":"reject","hits":18446744073709551615,"local_port":"1-65535","enabled":false}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"owner":"root","priority":-2147483648}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Rule
		if err := json.Unmarshal(data, &r); err != nil {
			return
		}
		checkRoundTrip(t, r)
	})
}

func TestLogEntryFieldsKeepUnaskedAndAnswered(t *testing.T) {
	for _, unasked := range []bool{false, true} {
		e := LogEntry{Connection: Connection{ID: 4, UID: 1000, GID: -1},
			Verdict: Verdict{Action: ActionDeny, Reason: "default", Unasked: unasked, Answered: !unasked}}
		back, err := LogEntryFromFields(e.Fields())
		if err != nil {
			t.Fatal(err)
		}
		if back.Verdict != e.Verdict {
			t.Errorf("unasked=%v: round trip gave %+v", unasked, back.Verdict)
		}
	}
	if _, err := LogEntryFromFields(map[string]any{"action": "deny", "unasked": "yes"}); err == nil {
		t.Error("a string unasked was accepted")
	}
	if _, err := LogEntryFromFields(map[string]any{"action": "deny", "answered": uint32(1)}); err == nil {
		t.Error("a number answered was accepted")
	}
}
