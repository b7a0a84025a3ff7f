package rulesdir

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

func TestLoadGood(t *testing.T) {
	rules, errs := Load("testdata/good")
	for _, err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	byID := map[string]shared.Rule{}
	var ids []string
	for _, r := range rules {
		ids = append(ids, r.ID)
		byID[r.ID] = r
		if r.Owner != shared.OwnerSystem || !r.ReadOnly {
			t.Errorf("%s: owner %d read-only %v", r.ID, r.Owner, r.ReadOnly)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", r.ID, err)
		}
	}
	// Files in name order, rules in file order; README, the hidden file
	// and anything not *.toml are ignored.
	want := []string{"10-base:dns", "10-base:ssh-out", "10-base:3", "20-apps:browser-https", "20-apps:updates-until", "20-apps:curl"}
	if !reflect.DeepEqual(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}

	dns := byID["10-base:dns"]
	if dns.Action != shared.ActionAllow || dns.Lifetime != shared.LifetimeForever || !dns.Enabled ||
		dns.Priority != 10 || dns.Note != "resolvers" || dns.Source != "rules.d/10-base.toml" ||
		dns.Match.Proto != shared.ProtoUDP || dns.Match.Port != (shared.PortRange{Lo: 53, Hi: 53}) {
		t.Errorf("dns rule %+v", dns)
	}
	if ssh := byID["10-base:ssh-out"]; ssh.Match.Exe != "/usr/bin/ssh" || ssh.Match.Port.String() != "22" || ssh.Match.Direction != shared.DirectionOut {
		t.Errorf("ssh rule %+v", ssh)
	}
	if tr := byID["10-base:3"]; tr.Action != shared.ActionReject || tr.Match.Host != "*.tracker.example" || tr.Name != "" {
		t.Errorf("tracker rule (normalized host) %+v", tr)
	}
	b := byID["20-apps:browser-https"] // its own id, under its file (never a stored rule's)
	wantMatch := shared.Match{
		Exe: "/usr/lib/*/firefox", ExeSHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		UID: b.Match.UID, GID: b.Match.GID, IP: netip.MustParsePrefix("10.0.0.0/8"),
		Port: shared.PortRange{Lo: 443, Hi: 443}, LocalPort: shared.PortRange{Lo: 1024, Hi: 65535}, Iface: "eth0",
	}
	if b.Name != "browser" || b.Source != "rules.d/20-apps.toml" || !reflect.DeepEqual(b.Match, wantMatch) ||
		b.Match.UID == nil || *b.Match.UID != 1000 || b.Match.GID == nil || *b.Match.GID != 1000 {
		t.Errorf("browser rule %+v", b)
	}
	u := byID["20-apps:updates-until"]
	if u.Enabled || u.Lifetime != shared.LifetimeUntil || !u.Until.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) || u.Match.Unit != "apt-daily*.service" {
		t.Errorf("until rule %+v", u)
	}
	if c := byID["20-apps:curl"]; c.Match.Cmdline != "curl *" || c.Owner != 0 {
		t.Errorf("curl rule %+v", c)
	}
}

func TestLoadMixed(t *testing.T) {
	rules, errs := Load("testdata/mixed")
	var ids []string
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	if want := []string{"10-ok:web", "10-ok:last-good", "30-dup:fine2"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("loaded %v, want %v", ids, want)
	}
	type want struct {
		file  string
		index int
		name  string
		field string // "" when not a field error
		text  string // substring of the message
	}
	wants := []want{
		{"10-ok.toml", 2, "bad-port", "port", "port 0"},
		{"10-ok.toml", 3, "web", "", "rule 1 has it already"},
		{"10-ok.toml", 4, "temporary", "lifetime", "session makes no sense"},
		{"10-ok.toml", 5, "counted", "hits", "kept by the daemon"},
		{"10-ok.toml", 6, "user rule", "owner", "system rules"},
		{"10-ok.toml", 7, "", "colour", "unknown field"},
		{"20-syntax.toml", 0, "", "", "parse TOML"},
		{"30-dup.toml", 0, "", "", `unknown key "stray"`},
		{"30-dup.toml", 2, "fine", "exe", "absolute path"},
		{"30-dup.toml", 1, "", "", "testdata/mixed/10-ok.toml has it already"},
	}
	if len(errs) != len(wants) {
		for _, err := range errs {
			t.Logf("error: %v", err)
		}
		t.Fatalf("%d errors, want %d", len(errs), len(wants))
	}
	for i, w := range wants {
		var e *Error
		if !errors.As(errs[i], &e) {
			t.Errorf("error %d (%v) is not a *rulesdir.Error", i, errs[i])
			continue
		}
		if e.File != filepath.Join("testdata/mixed", w.file) || e.Index != w.index || e.Name != w.name {
			t.Errorf("error %d at %s/%d/%q, want %s/%d/%q: %v", i, e.File, e.Index, e.Name, w.file, w.index, w.name, e)
		}
		var fe *shared.FieldError
		if w.field != "" && (!errors.As(e, &fe) || fe.Field != w.field) {
			t.Errorf("error %d: want a FieldError for %q: %v", i, w.field, e)
		}
		if !strings.Contains(e.Error(), w.text) {
			t.Errorf("error %d: %q lacks %q", i, e.Error(), w.text)
		}
	}
	if !errors.Is(errs[1], ErrDuplicateID) || !errors.Is(errs[9], ErrDuplicateID) {
		t.Errorf("duplicate-id errors do not wrap ErrDuplicateID")
	}
	if got := errs[0].Error(); got != `testdata/mixed/10-ok.toml: rule 2 "bad-port": field "port": bad port range "0-80": port 0 is not a port (1-65535)` {
		t.Errorf("message %q", got)
	}
}

func TestLoadMissingAndOddFiles(t *testing.T) {
	if rules, errs := Load(filepath.Join(t.TempDir(), "nope")); rules != nil || errs != nil {
		t.Errorf("missing dir: %v, %v", rules, errs)
	}
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("a.toml", "[[rule]]\nname = \"a\"\naction = \"allow\"\n", 0o644)
	write("b.toml", "[[rule]]\nname = \"b\"\naction = \"deny\"\n", 0o666)
	write("c.toml", "", 0o644) // empty: no rules, no error
	write("d.toml.bak", "garbage", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "e.toml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a-target", filepath.Join(dir, "f.toml")); err != nil {
		t.Fatal(err)
	}
	write("a-target", "[[rule]]\nname = \"linked\"\naction = \"allow\"\n", 0o644)
	if err := os.Symlink("missing-target", filepath.Join(dir, "g.toml")); err != nil {
		t.Fatal(err)
	}

	rules, errs := Load(dir)
	var ids []string
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	if want := []string{"a:a", "f:linked"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("loaded %v, want %v", ids, want)
	}
	if len(errs) != 2 {
		t.Fatalf("errors %v, want the world-writable file and the dangling link", errs)
	}
	var e *Error
	if !errors.As(errs[0], &e) || e.File != filepath.Join(dir, "b.toml") || !strings.Contains(e.Error(), "writable by users other than its owner") {
		t.Errorf("world-writable file: %v", errs[0])
	}
	if !errors.As(errs[1], &e) || e.File != filepath.Join(dir, "g.toml") || !errors.Is(errs[1], os.ErrNotExist) {
		t.Errorf("dangling link: %v", errs[1])
	}

	// A directory that cannot be listed is one error.
	if _, errs := Load(filepath.Join(dir, "a.toml")); len(errs) != 1 {
		t.Errorf("listing a file as a directory: %v", errs)
	}
}

func TestLoadRefusesWhatOthersCouldWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.toml")
	if err := os.WriteFile(p, []byte("[[rule]]\nname = \"a\"\naction = \"allow\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o664)
	if rules, errs := Load(dir); len(rules) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "mode 0664") {
		t.Errorf("group-writable file: %v %v", rules, errs)
	}
	os.Chmod(p, 0o644)
	os.Chmod(dir, 0o777)
	if rules, errs := Load(dir); len(rules) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "rules directory") {
		t.Errorf("world-writable directory: %v %v", rules, errs)
	}
	os.Chmod(dir, 0o755)
	if os.Geteuid() == 0 {
		os.Chown(p, 65534, 65534)
		if rules, errs := Load(dir); len(rules) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "owned by uid 65534") {
			t.Errorf("file owned by nobody: %v %v", rules, errs)
		}
	}
}

func TestParse(t *testing.T) {
	// Callers may pass a path: the base name makes ids and Source.
	rules, errs := Parse("/some/where/50-x.toml", []byte(`
[[rule]]
action = "allow"
port = 443

[[rule]]
name = "n"
action = "deny"
lifetime = "forever"
until = 1700000000
`))
	if len(rules) != 1 || rules[0].ID != "50-x:1" || rules[0].Source != "rules.d/50-x.toml" {
		t.Errorf("rules %+v", rules)
	}
	var fe *shared.FieldError
	if len(errs) != 1 || !errors.As(errs[0], &fe) || fe.Field != "until" || !strings.HasPrefix(errs[0].Error(), "/some/where/50-x.toml: rule 2 \"n\": ") {
		t.Errorf("errors %v, want until without lifetime until", errs)
	}

	for _, tc := range []struct{ name, body, text string }{
		{"single table", "[rule]\naction = \"allow\"\n", "parse TOML"},
		{"nested table", "[[rule]]\naction = \"allow\"\n[rule.match]\nport = 1\n", `field "match": unknown field`},
		{"array value", "[[rule]]\naction = \"allow\"\nport = [1, 2]\n", `field "port"`},
		{"process lifetime", "[[rule]]\naction = \"allow\"\nlifetime = \"process\"\n", "process makes no sense"},
		{"once lifetime", "[[rule]]\naction = \"allow\"\nlifetime = \"once\"\n", "once makes no sense"},
		{"read_only", "[[rule]]\naction = \"allow\"\nread_only = true\n", `field "read_only"`},
		{"no action", "[[rule]]\nname = \"x\"\n", `field "action": required`},
		{"float port", "[[rule]]\naction = \"allow\"\nport = 22.5\n", `field "port"`},
		{"huge", strings.Repeat("#", MaxFileSize+1), "larger than"},
	} {
		rules, errs := Parse("t.toml", []byte(tc.body))
		if len(rules) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.text) {
			t.Errorf("%s: rules %v, errors %v; want one error with %q", tc.name, rules, errs, tc.text)
		}
	}
	if rules, errs := Parse("empty.toml", nil); rules != nil || errs != nil {
		t.Errorf("empty file: %v %v", rules, errs)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"good/10-base.toml", "good/20-apps.toml", "mixed/10-ok.toml", "mixed/30-dup.toml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[[rule]]\naction = \"allow\"\nip = \"::ffff:1.2.3.4\"\nuntil = 2030-01-01\nlifetime = \"until\"\n"))
	f.Add([]byte("[[rule]]\nid = \"\"\naction = \"reject\"\nhost = \"*.EXAMPLE.org.\"\nuid = 4294967295\n"))
	f.Add([]byte("[[rule]]\n[[rule]]\na = {b = [1, {c = 2}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, errs := Parse("fuzz.toml", data)
		for _, err := range errs {
			var e *Error
			if !errors.As(err, &e) || e.File != "fuzz.toml" || err.Error() == "" {
				t.Fatalf("error %v is not a *Error for the file", err)
			}
		}
		seen := map[string]bool{}
		for _, r := range rules {
			if err := r.Validate(); err != nil {
				t.Fatalf("loaded rule does not validate: %v", err)
			}
			if r.ID == "" || seen[r.ID] {
				t.Fatalf("empty or repeated id %q", r.ID)
			}
			seen[r.ID] = true
			if !r.ReadOnly || r.Owner != shared.OwnerSystem || r.Source != "rules.d/fuzz.toml" {
				t.Fatalf("rule not marked as a system file rule: %+v", r)
			}
			if r.Lifetime != shared.LifetimeForever && r.Lifetime != shared.LifetimeUntil {
				t.Fatalf("lifetime %q loaded from a file", r.Lifetime)
			}
			back, err := shared.RuleFromFields(r.Fields())
			if err != nil || !reflect.DeepEqual(back.Fields(), r.Fields()) {
				t.Fatalf("loaded rule does not round-trip: %v", err)
			}
		}
	})
}
