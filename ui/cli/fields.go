package cli

import (
	"flag"
	"fmt"
	"math"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// ruleFlag is one rule field offered as a flag of `rules add` and `rules
// edit`. The flag name is the shared field name with "-" for "_" (the
// shared spelling is accepted too).
type ruleFlag struct {
	field string
	help  string
}

var ruleFlagList = []ruleFlag{
	{"action", "allow | deny | reject"},
	{"exe", "executable path, exact or glob"},
	{"exe_sha256", "sha256 of the executable (hex)"},
	{"cmdline", "command line, exact or glob"},
	{"unit", "cgroup path or systemd unit, exact or glob"},
	{"uid", "user id (or user name) of the socket"},
	{"gid", "group id (or group name) of the socket"},
	{"direction", "out | in"},
	{"proto", "tcp | udp | icmp | any"},
	{"host", "remote host: example.org or *.example.org"},
	{"ip", "remote address or CIDR"},
	{"port", "remote port or range: 443 or 8000-8100"},
	{"local_port", "local port or range"},
	{"iface", "interface name"},
	{"name", "a name for the rule"},
	{"note", "free text"},
	{"priority", "explicit priority (higher wins over specificity)"},
	{"lifetime", "once | session | process | until | forever (default forever)"},
	{"until", "end time for lifetime until: RFC 3339, 2006-01-02 15:04, or a duration like 2h or 3d"},
	{"owner", "uid or user name the rule applies to; root or system for a system rule"},
}

// ruleFlags collects the rule field flags given on the command line, in the
// order they came.
type ruleFlags struct {
	vals  map[string]string
	order []string
}

func addRuleFlags(fs *flag.FlagSet) *ruleFlags {
	rf := &ruleFlags{vals: map[string]string{}}
	for _, f := range ruleFlagList {
		set := func(s string) error {
			if _, ok := rf.vals[f.field]; !ok {
				rf.order = append(rf.order, f.field)
			}
			rf.vals[f.field] = s
			return nil
		}
		fs.Func(strings.ReplaceAll(f.field, "_", "-"), f.help, set)
		if strings.Contains(f.field, "_") {
			fs.Func(f.field, f.help, set)
		}
	}
	return rf
}

// apply writes the given flags into the field map f (a rule's writable
// fields; empty for a new rule). An empty value removes the field. Values
// are converted to the types shared.Rule.Fields uses, so the map can be
// sent as it is.
func (rf *ruleFlags) apply(f map[string]any, now time.Time) error {
	for _, k := range rf.order {
		s := rf.vals[k]
		if s == "" {
			delete(f, k)
			continue
		}
		v, err := fieldValue(k, s, now)
		if err != nil {
			return err
		}
		f[k] = v
	}
	_, lifetimeGiven := rf.vals["lifetime"]
	if u, ok := rf.vals["until"]; ok && !lifetimeGiven {
		// --until alone means lifetime until; --until "" ends it.
		if u != "" {
			f["lifetime"] = string(shared.LifetimeUntil)
		} else if f["lifetime"] == string(shared.LifetimeUntil) {
			f["lifetime"] = string(shared.LifetimeForever)
		}
	}
	if l, ok := f["lifetime"]; ok && l != string(shared.LifetimeUntil) {
		if _, untilGiven := rf.vals["until"]; !untilGiven {
			delete(f, "until") // changing to another lifetime drops the old end
		}
	}
	return nil
}

func fieldValue(k, s string, now time.Time) (any, error) {
	switch k {
	case "uid", "owner":
		if k == "owner" && (s == "root" || s == "system") {
			return shared.OwnerSystem, nil
		}
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			return uint32(n), nil
		}
		u, err := user.Lookup(s)
		if err != nil {
			return nil, &shared.FieldError{Field: k, Msg: fmt.Sprintf("%q is neither a uid nor a known user", s)}
		}
		n, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, &shared.FieldError{Field: k, Msg: fmt.Sprintf("user %q has uid %q", s, u.Uid)}
		}
		return uint32(n), nil
	case "gid":
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			return uint32(n), nil
		}
		g, err := user.LookupGroup(s)
		if err != nil {
			return nil, &shared.FieldError{Field: k, Msg: fmt.Sprintf("%q is neither a gid nor a known group", s)}
		}
		n, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return nil, &shared.FieldError{Field: k, Msg: fmt.Sprintf("group %q has gid %q", s, g.Gid)}
		}
		return uint32(n), nil
	case "priority":
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
			return nil, &shared.FieldError{Field: k, Msg: fmt.Sprintf("%q is not an integer in the int32 range", s)}
		}
		return int32(n), nil
	case "until":
		t, err := parseWhen(s, now, time.Local, true)
		if err != nil {
			return nil, &shared.FieldError{Field: k, Msg: err.Error()}
		}
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	return s, nil
}

// parseWhen reads a time as a user types it: RFC 3339, "2006-01-02
// 15:04[:05]", "2006-01-02" (in loc), or a duration ("90m", "2h", "3d")
// counted forward from now (future) or back from now (!future).
func parseWhen(s string, now time.Time, loc *time.Location, future bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	d, err := parseDuration(strings.TrimPrefix(s, "+"))
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, 2006-01-02 15:04) or a positive duration (90m, 2h, 3d)", s)
	}
	if future {
		return now.Add(d), nil
	}
	return now.Add(-d), nil
}

// parseDuration is time.ParseDuration that also takes whole days ("3d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// checkRule decodes, normalizes and validates a field map with shared's
// rules, so a bad field is reported locally by its shared name.
func checkRule(f map[string]any) (shared.Rule, error) {
	r, err := shared.RuleFromFields(f)
	if err != nil {
		return shared.Rule{}, err
	}
	r.Normalize()
	if err := r.Validate(); err != nil {
		return shared.Rule{}, err
	}
	return r, nil
}

// writable returns r's fields without the ones the daemon keeps.
func writable(r shared.Rule) map[string]any {
	f := r.Fields()
	for k := range f {
		if shared.IsBookkeepingField(k) {
			delete(f, k)
		}
	}
	return f
}
