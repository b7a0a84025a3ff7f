package shared

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Field names, one set everywhere: TOML rules files, JSON export, D-Bus
// a{sv} and CLI flags.
var (
	ruleFields        = []string{"id", "name", "action", "lifetime", "until", "owner", "enabled", "priority", "note"}
	matchFields       = []string{"exe", "exe_sha256", "cmdline", "unit", "uid", "gid", "direction", "proto", "host", "ip", "port", "local_port", "iface"}
	bookkeepingFields = []string{"pid", "pid_start", "session", "source", "read_only", "created", "updated", "hits", "last_hit"}
)

// FieldNames returns every field name in canonical order: the rule fields,
// the match fields, then the bookkeeping fields.
func FieldNames() []string {
	return slices.Concat(ruleFields, matchFields, bookkeepingFields)
}

// MatchFieldNames returns the names of the match fields.
func MatchFieldNames() []string { return slices.Clone(matchFields) }

// IsBookkeepingField reports whether name is kept by the daemon rather than
// written by whoever makes a rule: pid, pid_start, session, source,
// read_only, created, updated, hits, last_hit.
func IsBookkeepingField(name string) bool { return slices.Contains(bookkeepingFields, name) }

// Fields encodes r as a field map, the form rules take on D-Bus (a{sv}) and
// in JSON. Only set fields are present, except enabled, which always is.
// Value types:
//
//	string  id name action lifetime note exe exe_sha256 cmdline unit
//	        direction proto host iface session source
//	string  ip ("192.0.2.7" or "10.0.0.0/8"), port and local_port ("443" or
//	        "8000-8100")
//	string  until created updated last_hit: RFC 3339 in UTC, with fractional
//	        seconds when there are any (time.RFC3339Nano)
//	bool    enabled read_only
//	int32   priority pid
//	uint32  owner uid gid
//	uint64  pid_start hits
//
// RuleFromFields reads these back.
func (r Rule) Fields() map[string]any {
	f := make(map[string]any, 12)
	str := func(k, v string) {
		if v != "" {
			f[k] = v
		}
	}
	tm := func(k string, t time.Time) {
		if !t.IsZero() {
			f[k] = t.UTC().Format(time.RFC3339Nano)
		}
	}
	ports := func(k string, p PortRange) {
		if !p.IsAny() {
			f[k] = p.String()
		}
	}
	str("id", r.ID)
	str("name", r.Name)
	str("action", string(r.Action))
	str("lifetime", string(r.Lifetime))
	tm("until", r.Until)
	if r.Owner != OwnerSystem {
		f["owner"] = r.Owner
	}
	f["enabled"] = r.Enabled
	if r.Priority != 0 {
		f["priority"] = int32(r.Priority)
	}
	str("note", r.Note)

	m := &r.Match
	str("exe", m.Exe)
	str("exe_sha256", m.ExeSHA256)
	str("cmdline", m.Cmdline)
	str("unit", m.Unit)
	if m.UID != nil {
		f["uid"] = *m.UID
	}
	if m.GID != nil {
		f["gid"] = *m.GID
	}
	str("direction", string(m.Direction))
	str("proto", string(m.Proto))
	str("host", m.Host)
	str("ip", FormatIP(m.IP))
	ports("port", m.Port)
	ports("local_port", m.LocalPort)
	str("iface", m.Iface)

	if r.PID != 0 {
		f["pid"] = int32(r.PID)
	}
	if r.PIDStart != 0 {
		f["pid_start"] = r.PIDStart
	}
	str("session", r.Session)
	str("source", r.Source)
	if r.ReadOnly {
		f["read_only"] = true
	}
	tm("created", r.Created)
	tm("updated", r.Updated)
	if r.Hits != 0 {
		f["hits"] = r.Hits
	}
	tm("last_hit", r.LastHit)
	return f
}

// RuleFromFields decodes a field map as Fields makes it, and also the
// looser forms TOML, JSON and D-Bus produce: integers of any Go integer
// type, float64 holding an integral value, json.Number; ports as "443",
// "8000-8100" or an integer; owner as a uid or "root"/"system"; times as
// RFC 3339 strings, time.Time or integer unix seconds.
//
// An absent enabled means true. An unknown field or a value of the wrong
// type or syntax is a *FieldError (the first, in field-name order). Only
// syntax is checked here: call Normalize and Validate on the result before
// using it.
func RuleFromFields(fields map[string]any) (Rule, error) {
	r := Rule{Enabled: true}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := r.setField(k, fields[k]); err != nil {
			return Rule{}, err
		}
	}
	return r, nil
}

func (r *Rule) setField(k string, v any) error {
	m := &r.Match
	var err error
	switch k {
	case "id":
		r.ID, err = asString(k, v)
	case "name":
		r.Name, err = asString(k, v)
	case "action":
		err = parseString(k, v, ParseAction, &r.Action)
	case "lifetime":
		err = parseString(k, v, ParseLifetime, &r.Lifetime)
	case "until":
		r.Until, err = asTime(k, v)
	case "owner":
		if s, ok := v.(string); ok {
			r.Owner, err = ParseOwner(s)
			if err != nil {
				return fieldErr(k, "%v", err)
			}
			return nil
		}
		var n int64
		n, err = asInt(k, v, 0, math.MaxUint32)
		r.Owner = uint32(n)
	case "enabled":
		r.Enabled, err = asBool(k, v)
	case "priority":
		var n int64
		n, err = asInt(k, v, math.MinInt32, math.MaxInt32)
		r.Priority = int(n)
	case "note":
		r.Note, err = asString(k, v)
	case "exe":
		m.Exe, err = asString(k, v)
	case "exe_sha256":
		m.ExeSHA256, err = asString(k, v)
	case "cmdline":
		m.Cmdline, err = asString(k, v)
	case "unit":
		m.Unit, err = asString(k, v)
	case "uid", "gid":
		var n int64
		n, err = asInt(k, v, 0, math.MaxUint32)
		if err == nil {
			id := uint32(n)
			if k == "uid" {
				m.UID = &id
			} else {
				m.GID = &id
			}
		}
	case "direction":
		err = parseString(k, v, ParseDirection, &m.Direction)
	case "proto":
		err = parseString(k, v, ParseProto, &m.Proto)
	case "host":
		m.Host, err = asString(k, v)
	case "ip":
		err = parseString(k, v, ParseIP, &m.IP)
	case "port":
		m.Port, err = asPorts(k, v)
	case "local_port":
		m.LocalPort, err = asPorts(k, v)
	case "iface":
		m.Iface, err = asString(k, v)
	case "pid":
		var n int64
		n, err = asInt(k, v, 0, math.MaxInt32)
		r.PID = int(n)
	case "pid_start":
		r.PIDStart, err = asUint64(k, v)
	case "session":
		r.Session, err = asString(k, v)
	case "source":
		r.Source, err = asString(k, v)
	case "read_only":
		r.ReadOnly, err = asBool(k, v)
	case "created":
		r.Created, err = asTime(k, v)
	case "updated":
		r.Updated, err = asTime(k, v)
	case "hits":
		r.Hits, err = asUint64(k, v)
	case "last_hit":
		r.LastHit, err = asTime(k, v)
	default:
		return fieldErr(k, "unknown field")
	}
	return err
}

// MarshalJSON encodes r as the JSON object of its Fields (keys sorted).
func (r Rule) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.Fields())
}

// UnmarshalJSON decodes a JSON object with RuleFromFields (data holds
// that object alone, as json.Unmarshal passes it). Like
// RuleFromFields it checks syntax only: Normalize and Validate the result.
func (r *Rule) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	rule, ok := decodeRuleFast(data)
	if !ok {
		var err error
		if rule, err = decodeRuleGeneral(data); err != nil {
			return err
		}
	}
	*r = rule
	return nil
}

// decodeRuleGeneral decodes any JSON object through a map and
// RuleFromFields.
func decodeRuleGeneral(data []byte) (Rule, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return Rule{}, fmt.Errorf("decode rule: %w", err)
	}
	if m == nil {
		return Rule{}, fmt.Errorf("decode rule: not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Rule{}, fmt.Errorf("decode rule: data after the object")
	}
	return RuleFromFields(m)
}

func typeErr(k string, want string, v any) error {
	return fieldErr(k, "want %s, got %T", want, v)
}

func asString(k string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", typeErr(k, "a string", v)
	}
	return s, nil
}

func parseString[T any](k string, v any, parse func(string) (T, error), dst *T) error {
	s, ok := v.(string)
	if !ok {
		return typeErr(k, "a string", v)
	}
	x, err := parse(s)
	if err != nil {
		return fieldErr(k, "%v", err)
	}
	*dst = x
	return nil
}

func asBool(k string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, typeErr(k, "a boolean", v)
	}
	return b, nil
}

func asPorts(k string, v any) (PortRange, error) {
	if s, ok := v.(string); ok {
		p, err := ParsePortRange(s)
		if err != nil {
			return PortRange{}, fieldErr(k, "%v", err)
		}
		return p, nil
	}
	n, err := asInt(k, v, 1, math.MaxUint16)
	if err != nil {
		return PortRange{}, err
	}
	return PortRange{Lo: uint16(n), Hi: uint16(n)}, nil
}

// asTime reads an RFC 3339 string, a time.Time or integer unix seconds.
func asTime(k string, v any) (time.Time, error) {
	switch t := v.(type) {
	case string:
		p, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return time.Time{}, fieldErr(k, "want an RFC 3339 time: %v", err)
		}
		return p.UTC(), nil
	case time.Time:
		return t.UTC(), nil
	}
	n, ok := toInt64(v)
	if !ok {
		return time.Time{}, typeErr(k, "an RFC 3339 time or unix seconds", v)
	}
	// Beyond these the year leaves 1-9999 and no time format survives.
	if n < -62135596800 || n > 253402300799 {
		return time.Time{}, fieldErr(k, "unix time %d is out of range", n)
	}
	return time.Unix(n, 0).UTC(), nil
}

func asInt(k string, v any, lo, hi int64) (int64, error) {
	n, ok := toInt64(v)
	if !ok {
		return 0, typeErr(k, "an integer", v)
	}
	if n < lo || n > hi {
		return 0, fieldErr(k, "%d is out of range %d-%d", n, lo, hi)
	}
	return n, nil
}

func asUint64(k string, v any) (uint64, error) {
	n, ok := toUint64(v)
	if !ok {
		return 0, typeErr(k, "a non-negative integer", v)
	}
	return n, nil
}

// toInt64 converts any Go integer, an integral float or a json.Number that
// fits int64.
func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint:
		return int64(x), uint64(x) <= math.MaxInt64
	case uint64:
		return int64(x), x <= math.MaxInt64
	case float32:
		return floatToInt64(float64(x))
	case float64:
		return floatToInt64(x)
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n, true
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, false
		}
		return floatToInt64(f)
	}
	return 0, false
}

func floatToInt64(f float64) (int64, bool) {
	if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// toUint64 converts any non-negative Go integer, an integral float or a
// json.Number that fits uint64.
func toUint64(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint:
		return uint64(x), true
	case uint64:
		return x, true
	case float32:
		return floatToUint64(float64(x))
	case float64:
		return floatToUint64(x)
	case json.Number:
		if n, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return n, true
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, false
		}
		return floatToUint64(f)
	}
	n, ok := toInt64(v)
	if !ok || n < 0 {
		return 0, false
	}
	return uint64(n), true
}

func floatToUint64(f float64) (uint64, bool) {
	if f != math.Trunc(f) || f < 0 || f >= 1<<64 {
		return 0, false
	}
	return uint64(f), true
}

// decodeRuleFast decodes the JSON object of a rule without building a
// map[string]any: the form MarshalJSON writes (and most hand-written JSON)
// is read straight into the Rule, with enumerated values (action, lifetime,
// direction, proto, source "store") sharing the package's constants
// instead of a string per rule. Start-up decodes every stored rule, so this
// is most of its cost.
//
// It gives up (ok false) on anything it does not read exactly as the general
// path would: a repeated or unknown key, escapes in a key, invalid UTF-8,
// numbers with a fraction or exponent, nested values, null, trailing data,
// malformed JSON, and any field error. The caller then decodes data the
// general way, which gives the same result or the same error. A differential
// fuzz test holds the two paths to that.
func decodeRuleFast(data []byte) (Rule, bool) {
	r := Rule{Enabled: true}
	d := fastDecoder{data: data}
	if !d.byte('{') {
		return Rule{}, false
	}
	var seen uint64
	if d.peek() == '}' {
		d.i++
		return r, d.end()
	}
	for {
		key, ok := d.key()
		if !ok || !d.byte(':') {
			return Rule{}, false
		}
		bit, known := fieldBit(key)
		if !known || seen&bit != 0 {
			return Rule{}, false
		}
		seen |= bit
		d.ws()
		if d.i >= len(d.data) {
			return Rule{}, false
		}
		var err error
		switch c := d.data[d.i]; {
		case c == '"':
			raw, ok := d.str()
			if !ok {
				return Rule{}, false
			}
			err = r.setFastString(key, raw)
		case c == 't' || c == 'f':
			b, ok := d.boolean()
			if !ok {
				return Rule{}, false
			}
			err = r.setField(key, b)
		case c == '-' || ('0' <= c && c <= '9'):
			num, ok := d.integer()
			if !ok {
				return Rule{}, false
			}
			err = r.setField(key, json.Number(num))
		default:
			return Rule{}, false
		}
		if err != nil {
			return Rule{}, false
		}
		d.ws()
		if d.i >= len(d.data) {
			return Rule{}, false
		}
		switch d.data[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return r, d.end()
		default:
			return Rule{}, false
		}
	}
}

// fieldBit numbers the field names for decodeRuleFast's duplicate check.
func fieldBit(k string) (uint64, bool) {
	for _, names := range [][]string{ruleFields, matchFields, bookkeepingFields} {
		for _, n := range names {
			if n == k {
				return 1 << fieldIndex(k), true
			}
		}
	}
	return 0, false
}

func fieldIndex(k string) int {
	i := slices.Index(ruleFields, k)
	if i >= 0 {
		return i
	}
	if i = slices.Index(matchFields, k); i >= 0 {
		return len(ruleFields) + i
	}
	return len(ruleFields) + len(matchFields) + slices.Index(bookkeepingFields, k)
}

// setFastString sets field k from a JSON string's raw bytes (quotes
// removed, escapes still in). Values that name a constant take the
// constant; the rest are unescaped and copied once.
func (r *Rule) setFastString(k string, raw []byte) error {
	switch k {
	case "action", "lifetime", "direction", "proto", "source":
		if s, ok := enumString(raw); ok {
			return r.setField(k, s)
		}
	}
	s, err := unquoteFast(raw)
	if err != nil {
		return err
	}
	switch k {
	case "id":
		r.ID = s
	case "name":
		r.Name = s
	case "note":
		r.Note = s
	case "exe":
		r.Match.Exe = s
	case "exe_sha256":
		r.Match.ExeSHA256 = s
	case "cmdline":
		r.Match.Cmdline = s
	case "unit":
		r.Match.Unit = s
	case "host":
		r.Match.Host = s
	case "iface":
		r.Match.Iface = s
	case "session":
		r.Session = s
	case "source":
		r.Source = s
	default:
		return r.setField(k, s)
	}
	return nil
}

// enumString returns the constant a string value names, without
// allocating.
func enumString(raw []byte) (string, bool) {
	switch string(raw) {
	case "allow":
		return "allow", true
	case "deny":
		return "deny", true
	case "reject":
		return "reject", true
	case "once":
		return "once", true
	case "session":
		return "session", true
	case "process":
		return "process", true
	case "until":
		return "until", true
	case "forever":
		return "forever", true
	case "out":
		return "out", true
	case "in":
		return "in", true
	case "any":
		return "any", true
	case "tcp":
		return "tcp", true
	case "udp":
		return "udp", true
	case "icmp":
		return "icmp", true
	case "store":
		return "store", true
	}
	return "", false
}

var errFastGiveUp = fmt.Errorf("not for the fast path")

// unquoteFast turns a JSON string's raw bytes into a string: copied when
// plain; escapes are left to encoding/json, invalid UTF-8 to the general
// path (which replaces it).
func unquoteFast(raw []byte) (string, error) {
	plain := true
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(raw), nil
	}
	if !utf8.Valid(raw) {
		return "", errFastGiveUp
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", errFastGiveUp
	}
	return s, nil
}

// fastDecoder is a cursor over one JSON object.
type fastDecoder struct {
	data []byte
	i    int
}

func (d *fastDecoder) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDecoder) peek() byte {
	d.ws()
	if d.i >= len(d.data) {
		return 0
	}
	return d.data[d.i]
}

// byte consumes c after optional white space.
func (d *fastDecoder) byte(c byte) bool {
	if d.peek() != c {
		return false
	}
	d.i++
	return true
}

// end reports whether only white space is left.
func (d *fastDecoder) end() bool {
	d.ws()
	return d.i == len(d.data)
}

// key reads an object key: a string without escapes, as a string that
// shares the field name's constant (no allocation).
func (d *fastDecoder) key() (string, bool) {
	if d.peek() != '"' {
		return "", false
	}
	raw, ok := d.str()
	if !ok {
		return "", false
	}
	for _, names := range [][]string{ruleFields, matchFields, bookkeepingFields} {
		for _, n := range names {
			if n == string(raw) {
				return n, true
			}
		}
	}
	return "", false
}

// str reads a string at d.i (which is '"') and returns its raw bytes
// between the quotes; false on a control character or an unterminated
// string.
func (d *fastDecoder) str() ([]byte, bool) {
	start := d.i + 1
	for j := start; j < len(d.data); j++ {
		switch c := d.data[j]; {
		case c == '"':
			d.i = j + 1
			return d.data[start:j], true
		case c == '\\':
			j++ // the escaped character; unquoteFast checks the escape
		case c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (d *fastDecoder) boolean() (bool, bool) {
	rest := d.data[d.i:]
	switch {
	case bytes.HasPrefix(rest, []byte("true")):
		d.i += 4
		return true, d.delimited()
	case bytes.HasPrefix(rest, []byte("false")):
		d.i += 5
		return false, d.delimited()
	}
	return false, false
}

// integer reads -?(0|[1-9][0-9]*) that ends the value; anything else
// (fractions, exponents) is left to the general path.
func (d *fastDecoder) integer() (string, bool) {
	start := d.i
	if d.data[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.data) && '0' <= d.data[d.i] && d.data[d.i] <= '9' {
		d.i++
	}
	n := d.i - digits
	if n == 0 || (n > 1 && d.data[digits] == '0') || !d.delimited() {
		return "", false
	}
	return string(d.data[start:d.i]), true
}

// delimited reports whether the value just read ends at d.i.
func (d *fastDecoder) delimited() bool {
	if d.i >= len(d.data) {
		return true
	}
	switch d.data[d.i] {
	case ',', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}
