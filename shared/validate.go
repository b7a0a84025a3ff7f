package shared

import (
	"fmt"
	"math"
	"net/netip"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds on rule fields. D-Bus, the store and the prompt all rely on them.
const (
	MaxFieldLen = 4096 // any string field, in bytes
	MaxIDLen    = 256  // id
	MaxNameLen  = 256  // name
	MaxHostLen  = 253  // host, without a trailing dot
	MaxIfaceLen = 15   // iface (Linux IFNAMSIZ - 1)
)

// FieldError says which field of a rule is wrong and why. Every error of
// Validate and RuleFromFields is a *FieldError (use errors.As).
type FieldError struct {
	Field string // one of the shared field names ("port", "host", ...)
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("field %q: %s", e.Field, e.Msg)
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Normalize puts r into the canonical form Validate expects, without
// changing its meaning: an empty lifetime becomes forever; host is
// lower-cased and loses a trailing dot; exe_sha256 is lower-cased; ip is
// unmapped from IPv4-in-IPv6 and its host bits cleared; times are in UTC.
// It never fails; Validate judges what is left.
func (r *Rule) Normalize() {
	if r.Lifetime == "" {
		r.Lifetime = LifetimeForever
	}
	r.Match.Host = strings.ToLower(strings.TrimSuffix(r.Match.Host, "."))
	r.Match.ExeSHA256 = strings.ToLower(r.Match.ExeSHA256)
	r.Match.IP = canonicalPrefix(r.Match.IP)
	for _, t := range []*time.Time{&r.Until, &r.Created, &r.Updated, &r.LastHit} {
		if !t.IsZero() {
			*t = t.UTC()
		}
	}
}

// Validate checks every field of r and returns the first problem as a
// *FieldError, or nil.
//
// It expects the canonical form (see Normalize): it rejects an empty
// lifetime, an upper-case host and the like rather than fixing them.
//
// A rule whose Match is empty is valid: it is a catch-all that matches
// every connection of its owner (all of them for a system rule). Use a low
// priority or accept that any more specific rule beats it.
func (r *Rule) Validate() error {
	if err := validateText("id", r.ID, MaxIDLen, true); err != nil {
		return err
	}
	if err := validateText("name", r.Name, MaxNameLen, true); err != nil {
		return err
	}
	if r.Action == "" {
		return fieldErr("action", "required")
	}
	if _, err := ParseAction(string(r.Action)); err != nil {
		return fieldErr("action", "%v", err)
	}
	if r.Lifetime == "" {
		return fieldErr("lifetime", "required (Normalize sets forever)")
	}
	if _, err := ParseLifetime(string(r.Lifetime)); err != nil {
		return fieldErr("lifetime", "%v", err)
	}
	if r.Lifetime == LifetimeUntil && r.Until.IsZero() {
		return fieldErr("until", "required for lifetime until")
	}
	if r.Lifetime != LifetimeUntil && !r.Until.IsZero() {
		return fieldErr("until", "only valid with lifetime until (lifetime is %s)", r.Lifetime)
	}
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"until", r.Until}, {"created", r.Created}, {"updated", r.Updated}, {"last_hit", r.LastHit}} {
		if err := validateTime(t.name, t.t); err != nil {
			return err
		}
	}
	if r.Priority < math.MinInt32 || r.Priority > math.MaxInt32 {
		return fieldErr("priority", "%d is out of the int32 range", r.Priority)
	}
	if err := validateText("note", r.Note, MaxFieldLen, false); err != nil {
		return err
	}
	if err := r.Match.validate(); err != nil {
		return err
	}
	if r.PID < 0 || r.PID > math.MaxInt32 {
		return fieldErr("pid", "%d is not a process id", r.PID)
	}
	if r.Lifetime == LifetimeProcess && r.PID == 0 {
		return fieldErr("pid", "required for lifetime process")
	}
	if err := validateText("session", r.Session, MaxFieldLen, true); err != nil {
		return err
	}
	if err := validateText("source", r.Source, MaxFieldLen, true); err != nil {
		return err
	}
	return nil
}

func (m *Match) validate() error {
	if m.Exe != "" {
		if err := validateText("exe", m.Exe, MaxFieldLen, true); err != nil {
			return err
		}
		if !strings.HasPrefix(m.Exe, "/") {
			return fieldErr("exe", "%q is not an absolute path or a glob starting with /", m.Exe)
		}
		if err := validateGlob("exe", m.Exe); err != nil {
			return err
		}
	}
	if m.ExeSHA256 != "" {
		if len(m.ExeSHA256) != 64 || strings.Trim(m.ExeSHA256, "0123456789abcdef") != "" {
			return fieldErr("exe_sha256", "want 64 lower-case hex digits, got %q", m.ExeSHA256)
		}
	}
	if m.Cmdline != "" {
		// Whoever starts a process chooses its arguments (and can change
		// them later): a command line narrows an executable, it never
		// identifies a program on its own.
		if m.Exe == "" && m.ExeSHA256 == "" {
			return fieldErr("cmdline", "needs exe or exe_sha256 too: any program can claim any command line")
		}
		if err := validateText("cmdline", m.Cmdline, MaxFieldLen, false); err != nil {
			return err
		}
		if err := validateGlob("cmdline", m.Cmdline); err != nil {
			return err
		}
	}
	if m.Unit != "" {
		if err := validateText("unit", m.Unit, MaxFieldLen, true); err != nil {
			return err
		}
		if err := validateGlob("unit", m.Unit); err != nil {
			return err
		}
	}
	if m.Direction != "" {
		if _, err := ParseDirection(string(m.Direction)); err != nil {
			return fieldErr("direction", "%v", err)
		}
	}
	if m.Proto != "" {
		if _, err := ParseProto(string(m.Proto)); err != nil {
			return fieldErr("proto", "%v", err)
		}
	}
	if m.Host != "" {
		if err := ValidateHost(m.Host); err != nil {
			return fieldErr("host", "%v", err)
		}
	}
	if m.IP != (netip.Prefix{}) {
		if !m.IP.IsValid() {
			return fieldErr("ip", "invalid prefix %s", m.IP)
		}
		if m.IP.Addr().Zone() != "" {
			return fieldErr("ip", "zones are not allowed")
		}
		if c := canonicalPrefix(m.IP); c != m.IP {
			return fieldErr("ip", "%s is not canonical: write %s", m.IP, FormatIP(c))
		}
	}
	if err := validatePorts("port", m.Port); err != nil {
		return err
	}
	if err := validatePorts("local_port", m.LocalPort); err != nil {
		return err
	}
	if m.Iface != "" {
		if len(m.Iface) > MaxIfaceLen {
			return fieldErr("iface", "%q is longer than %d bytes", m.Iface, MaxIfaceLen)
		}
		if m.Iface == "." || m.Iface == ".." || strings.ContainsAny(m.Iface, "/:") || strings.IndexFunc(m.Iface, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError
		}) >= 0 {
			return fieldErr("iface", "%q is not an interface name", m.Iface)
		}
	}
	return nil
}

// ValidateHost checks a host pattern: "example.org" or "*.example.org",
// lower case, labels of 1-63 letters, digits, '-' or '_' (not starting or
// ending with '-'), at most 253 bytes, no trailing dot, and not an IP
// address (that is what the ip field is for).
func ValidateHost(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" {
		return fmt.Errorf("%q has no name", h)
	}
	if len(name) > MaxHostLen {
		return fmt.Errorf("host is longer than %d bytes", MaxHostLen)
	}
	if strings.HasSuffix(name, ".") {
		return fmt.Errorf("%q has a trailing dot (Normalize removes it)", h)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("%q is an IP address: use the ip field", h)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return fmt.Errorf("%q has an empty label", h)
		}
		if len(label) > 63 {
			return fmt.Errorf("%q has a label longer than 63 bytes", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q has a label starting or ending with '-'", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				return fmt.Errorf("%q is not lower case (Normalize lowers it)", h)
			case c == '*':
				return fmt.Errorf("%q: a wildcard is only allowed as a whole first label (*.example.org)", h)
			default:
				return fmt.Errorf("%q holds %q, which is not allowed in a host name", h, rune(c))
			}
		}
	}
	return nil
}

func validatePorts(field string, r PortRange) error {
	if r.IsAny() {
		return nil
	}
	if r.Lo == 0 {
		return fieldErr(field, "port 0 is not a port (1-65535)")
	}
	if r.Lo > r.Hi {
		return fieldErr(field, "low end %d is above high end %d", r.Lo, r.Hi)
	}
	return nil
}

// validateText bounds a string field and keeps it sendable over D-Bus:
// valid UTF-8 without NUL; single-line fields also refuse control
// characters.
func validateText(field, s string, max int, singleLine bool) error {
	if len(s) > max {
		return fieldErr(field, "longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "not valid UTF-8")
	}
	for _, r := range s {
		if r == 0 || (singleLine && unicode.IsControl(r)) {
			return fieldErr(field, "holds control character %U", r)
		}
	}
	return nil
}

func validateGlob(field, pattern string) error {
	if _, err := path.Match(pattern, ""); err != nil {
		return fieldErr(field, "bad glob %q: %v", pattern, err)
	}
	return nil
}

// Times must survive RFC 3339 (four-digit years) and predate nothing the
// daemon can have seen.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

func validateTime(field string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return fieldErr(field, "%s is outside 1970-9999", t.Format(time.RFC3339))
	}
	return nil
}
