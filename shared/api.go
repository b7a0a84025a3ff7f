package shared

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// This file holds the types of the daemon's public API (D-Bus and its
// clients) besides Rule: status, pending connections, answers, log filters,
// and their field-map (a{sv}) encodings. The field maps use the same value
// types as Rule.Fields: strings, bool, int32/uint32/uint64/int64, times as
// RFC 3339 strings, lists of strings; a nested record is a nested field map.

// Status is the daemon's state as GetStatus and StatusChanged report it.
type Status struct {
	Mode          string // enforcing | monitor | disabled
	Version       string
	DefaultAction Action
	Rules         int // rules the caller can see
	Pending       int // pending groups the caller can see
	Agents        int // registered agents

	// Kernel queue statistics (nfnetlink_queue).
	QueueWaiting     uint64 // packets waiting in the kernel queue now
	QueueDropped     uint64 // dropped by the kernel: queue full
	QueueUserDropped uint64 // dropped by the kernel: netlink socket buffer full

	// Decisions since start.
	Decided, Allowed, Denied uint64
}

// Fields encodes s as a field map. Value types: string mode version
// default_action; uint32 rules pending agents; uint64 queue_waiting
// queue_dropped queue_user_dropped decided allowed denied.
func (s Status) Fields() map[string]any {
	f := map[string]any{
		"mode":               s.Mode,
		"version":            s.Version,
		"default_action":     string(s.DefaultAction),
		"rules":              clampU32(s.Rules),
		"pending":            clampU32(s.Pending),
		"agents":             clampU32(s.Agents),
		"queue_waiting":      s.QueueWaiting,
		"queue_dropped":      s.QueueDropped,
		"queue_user_dropped": s.QueueUserDropped,
		"decided":            s.Decided,
		"allowed":            s.Allowed,
		"denied":             s.Denied,
	}
	return f
}

// StatusFromFields decodes what Status.Fields makes. Unknown fields are
// ignored (a newer daemon may add some); a known field of the wrong type is a
// *FieldError.
func StatusFromFields(f map[string]any) (Status, error) {
	var s Status
	var err error
	for _, k := range sortedKeys(f) {
		v := f[k]
		switch k {
		case "mode":
			s.Mode, err = asString(k, v)
		case "version":
			s.Version, err = asString(k, v)
		case "default_action":
			var a string
			a, err = asString(k, v)
			s.DefaultAction = Action(a)
		case "rules":
			s.Rules, err = asCount(k, v)
		case "pending":
			s.Pending, err = asCount(k, v)
		case "agents":
			s.Agents, err = asCount(k, v)
		case "queue_waiting":
			s.QueueWaiting, err = asUint64(k, v)
		case "queue_dropped":
			s.QueueDropped, err = asUint64(k, v)
		case "queue_user_dropped":
			s.QueueUserDropped, err = asUint64(k, v)
		case "decided":
			s.Decided, err = asUint64(k, v)
		case "allowed":
			s.Allowed, err = asUint64(k, v)
		case "denied":
			s.Denied, err = asUint64(k, v)
		}
		if err != nil {
			return Status{}, err
		}
	}
	return s, nil
}

// Pending is one pending group: connections of one (process, user, remote
// host or IP, port, protocol) held while an agent is asked.
type Pending struct {
	ID         uint64
	Connection Connection // the first connection of the group
	Count      int        // connection attempts grouped so far
	Since      time.Time  // when the group opened
	Deadline   time.Time  // when the default action applies unless answered
}

// Fields encodes p as a field map: uint64 id, uint32 count, string since
// deadline (RFC 3339), connection: the nested field map of
// Connection.Fields.
func (p Pending) Fields() map[string]any {
	f := map[string]any{
		"id":         p.ID,
		"count":      clampU32(p.Count),
		"connection": p.Connection.Fields(),
	}
	putTime(f, "since", p.Since)
	putTime(f, "deadline", p.Deadline)
	return f
}

// PendingFromFields decodes what Pending.Fields makes; unknown fields are
// ignored.
func PendingFromFields(f map[string]any) (Pending, error) {
	var p Pending
	var err error
	for _, k := range sortedKeys(f) {
		v := f[k]
		switch k {
		case "id":
			p.ID, err = asUint64(k, v)
		case "count":
			p.Count, err = asCount(k, v)
		case "since":
			p.Since, err = asTime(k, v)
		case "deadline":
			p.Deadline, err = asTime(k, v)
		case "connection":
			m, ok := v.(map[string]any)
			if !ok {
				return Pending{}, typeErr(k, "a field map", v)
			}
			p.Connection, err = ConnectionFromFields(m)
		}
		if err != nil {
			return Pending{}, err
		}
	}
	return p, nil
}

// AnswerScope says how far the rule made by an answer reaches.
type AnswerScope string

const (
	ScopeExeHostPort AnswerScope = "exe-host-port" // this executable to this host and port
	ScopeExeHost     AnswerScope = "exe-host"      // this executable to this host, any port
	ScopeExeAny      AnswerScope = "exe-any"       // this executable to any host
	ScopeAnyExeHost  AnswerScope = "any-exe-host"  // any executable to this host
)

// ParseAnswerScope parses a scope name; "" means ScopeExeHostPort.
func ParseAnswerScope(s string) (AnswerScope, error) {
	switch sc := AnswerScope(s); sc {
	case "":
		return ScopeExeHostPort, nil
	case ScopeExeHostPort, ScopeExeHost, ScopeExeAny, ScopeAnyExeHost:
		return sc, nil
	}
	return "", fmt.Errorf("unknown scope %q (want exe-host-port, exe-host, exe-any or any-exe-host)", s)
}

// Answer is an agent's or admin's answer to a pending group.
type Answer struct {
	PendingID uint64
	Action    Action
	Lifetime  Lifetime
	Scope     AnswerScope
	Until     time.Time // LifetimeUntil
	System    bool      // make a system rule (admins only) instead of one owned by the answering user
}

// AnswerOptions are the optional parts of an answer as a field map: until
// (RFC 3339 string or unix seconds), system (bool).
func (a Answer) Options() map[string]any {
	f := map[string]any{}
	putTime(f, "until", a.Until)
	if a.System {
		f["system"] = true
	}
	return f
}

// ParseAnswer checks and assembles an answer from its parts as they come
// over D-Bus. Unknown options are a *FieldError.
func ParseAnswer(id uint64, action, lifetime, scope string, options map[string]any) (Answer, error) {
	a := Answer{PendingID: id}
	var err error
	if a.Action, err = ParseAction(action); err != nil {
		return Answer{}, fieldErr("action", "%v", err)
	}
	if a.Lifetime, err = ParseLifetime(lifetime); err != nil {
		return Answer{}, fieldErr("lifetime", "%v", err)
	}
	if a.Scope, err = ParseAnswerScope(scope); err != nil {
		return Answer{}, fieldErr("scope", "%v", err)
	}
	for _, k := range sortedKeys(options) {
		v := options[k]
		switch k {
		case "until":
			a.Until, err = asTime(k, v)
		case "system":
			a.System, err = asBool(k, v)
		default:
			err = fieldErr(k, "unknown answer option")
		}
		if err != nil {
			return Answer{}, err
		}
	}
	if a.Lifetime == LifetimeUntil && a.Until.IsZero() {
		return Answer{}, fieldErr("until", "lifetime until needs an until time")
	}
	if a.Lifetime != LifetimeUntil && !a.Until.IsZero() {
		return Answer{}, fieldErr("until", "only lifetime until takes an until time")
	}
	return a, nil
}

// LogFilter selects entries of the connection log (RecentConnections).
type LogFilter struct {
	Limit  int       // at most this many, newest first; 0 = the daemon's default
	Since  time.Time // only entries at or after this time
	Action Action    // only this verdict action
	Exe    string    // only this executable (exact)
	Host   string    // only connections to this host name (exact)
	UID    *uint32   // only this uid (admins; others always see only their own)
}

// Fields encodes the filter: uint32 limit uid; string since action exe host.
func (l LogFilter) Fields() map[string]any {
	f := map[string]any{}
	if l.Limit > 0 {
		f["limit"] = clampU32(l.Limit)
	}
	putTime(f, "since", l.Since)
	if l.Action != "" {
		f["action"] = string(l.Action)
	}
	if l.Exe != "" {
		f["exe"] = l.Exe
	}
	if l.Host != "" {
		f["host"] = l.Host
	}
	if l.UID != nil {
		f["uid"] = *l.UID
	}
	return f
}

// MaxLogLimit bounds LogFilter.Limit.
const MaxLogLimit = 10000

// LogFilterFromFields decodes a filter. Unknown fields are a *FieldError
// (a filter that silently ignores a condition would show too much).
func LogFilterFromFields(f map[string]any) (LogFilter, error) {
	var l LogFilter
	var err error
	for _, k := range sortedKeys(f) {
		v := f[k]
		switch k {
		case "limit":
			var n int64
			n, err = asInt(k, v, 0, MaxLogLimit)
			l.Limit = int(n)
		case "since":
			l.Since, err = asTime(k, v)
		case "action":
			err = parseString(k, v, ParseAction, &l.Action)
		case "exe":
			l.Exe, err = asString(k, v)
		case "host":
			l.Host, err = asString(k, v)
		case "uid":
			var n int64
			n, err = asInt(k, v, 0, math.MaxUint32)
			u := uint32(n)
			l.UID = &u
		default:
			err = fieldErr(k, "unknown filter field")
		}
		if err != nil {
			return LogFilter{}, err
		}
	}
	return l, nil
}

// Matches reports whether e passes the filter (Limit aside).
func (l LogFilter) Matches(e LogEntry) bool {
	c := &e.Connection
	switch {
	case !l.Since.IsZero() && c.Time.Before(l.Since):
		return false
	case l.Action != "" && e.Verdict.Action != l.Action:
		return false
	case l.Exe != "" && c.Exe != l.Exe:
		return false
	case l.Host != "" && !slices.Contains(c.Hosts, l.Host):
		return false
	case l.UID != nil && c.UID != int64(*l.UID):
		return false
	}
	return true
}

// Fields encodes c as a field map with the names of its JSON form. Value
// types: uint64 id pid_start; string time (RFC 3339) direction proto
// local_ip remote_ip iface exe exe_sha256 cmdline unit app user attribution;
// byte proto_num; uint16 local_port remote_port; int64 uid gid (-1 =
// unknown, always present); int32 pid ppid; []string hosts. Empty fields are
// left out.
func (c Connection) Fields() map[string]any {
	f := make(map[string]any, 16)
	str := func(k, v string) {
		if v != "" {
			f[k] = v
		}
	}
	if c.ID != 0 {
		f["id"] = c.ID
	}
	putTime(f, "time", c.Time)
	str("direction", string(c.Direction))
	str("proto", string(c.Proto))
	if c.ProtoNum != 0 {
		f["proto_num"] = c.ProtoNum
	}
	if c.LocalIP.IsValid() {
		f["local_ip"] = c.LocalIP.String()
	}
	if c.LocalPort != 0 {
		f["local_port"] = c.LocalPort
	}
	if c.RemoteIP.IsValid() {
		f["remote_ip"] = c.RemoteIP.String()
	}
	if c.RemotePort != 0 {
		f["remote_port"] = c.RemotePort
	}
	str("iface", c.Iface)
	f["uid"] = c.UID
	f["gid"] = c.GID
	if c.PID != 0 {
		f["pid"] = int32(c.PID)
	}
	if c.PIDStart != 0 {
		f["pid_start"] = c.PIDStart
	}
	if c.PPID != 0 {
		f["ppid"] = int32(c.PPID)
	}
	str("exe", c.Exe)
	str("exe_claimed", c.ExeClaimed)
	str("exe_sha256", c.ExeSHA256)
	str("cmdline", c.Cmdline)
	str("unit", c.Unit)
	str("app", c.App)
	str("user", c.User)
	str("attribution", string(c.Attribution))
	if len(c.Hosts) > 0 {
		f["hosts"] = slices.Clone(c.Hosts)
	}
	return f
}

// ConnectionFromFields decodes what Connection.Fields makes (and the looser
// integer forms RuleFromFields accepts). Unknown fields are ignored; absent
// uid and gid mean -1 (unknown).
func ConnectionFromFields(f map[string]any) (Connection, error) {
	c := Connection{UID: -1, GID: -1}
	var err error
	var n int64
	for _, k := range sortedKeys(f) {
		v := f[k]
		switch k {
		case "id":
			c.ID, err = asUint64(k, v)
		case "time":
			c.Time, err = asTime(k, v)
		case "direction":
			err = parseString(k, v, ParseDirection, &c.Direction)
		case "proto":
			err = parseString(k, v, ParseProto, &c.Proto)
		case "proto_num":
			n, err = asInt(k, v, 0, math.MaxUint8)
			c.ProtoNum = uint8(n)
		case "local_ip":
			err = parseString(k, v, netip.ParseAddr, &c.LocalIP)
		case "remote_ip":
			err = parseString(k, v, netip.ParseAddr, &c.RemoteIP)
		case "local_port":
			n, err = asInt(k, v, 0, math.MaxUint16)
			c.LocalPort = uint16(n)
		case "remote_port":
			n, err = asInt(k, v, 0, math.MaxUint16)
			c.RemotePort = uint16(n)
		case "iface":
			c.Iface, err = asString(k, v)
		case "uid":
			c.UID, err = asInt(k, v, -1, math.MaxUint32)
		case "gid":
			c.GID, err = asInt(k, v, -1, math.MaxUint32)
		case "pid":
			n, err = asInt(k, v, 0, math.MaxInt32)
			c.PID = int(n)
		case "pid_start":
			c.PIDStart, err = asUint64(k, v)
		case "ppid":
			n, err = asInt(k, v, 0, math.MaxInt32)
			c.PPID = int(n)
		case "exe":
			c.Exe, err = asString(k, v)
		case "exe_claimed":
			c.ExeClaimed, err = asString(k, v)
		case "exe_sha256":
			c.ExeSHA256, err = asString(k, v)
		case "cmdline":
			c.Cmdline, err = asString(k, v)
		case "unit":
			c.Unit, err = asString(k, v)
		case "app":
			c.App, err = asString(k, v)
		case "user":
			c.User, err = asString(k, v)
		case "attribution":
			var a string
			a, err = asString(k, v)
			c.Attribution = Attribution(a)
		case "hosts":
			c.Hosts, err = asStrings(k, v)
		}
		if err != nil {
			return Connection{}, err
		}
	}
	return c, nil
}

// Fields encodes a log entry as its connection's field map plus the
// verdict: string action rule_id reason, bool monitor unasked answered.
func (e LogEntry) Fields() map[string]any {
	f := e.Connection.Fields()
	f["action"] = string(e.Verdict.Action)
	if e.Verdict.RuleID != "" {
		f["rule_id"] = e.Verdict.RuleID
	}
	if e.Verdict.Reason != "" {
		f["reason"] = e.Verdict.Reason
	}
	if e.Verdict.Monitor {
		f["monitor"] = true
	}
	if e.Verdict.Unasked {
		f["unasked"] = true
	}
	if e.Verdict.Answered {
		f["answered"] = true
	}
	return f
}

// LogEntryFromFields decodes what LogEntry.Fields makes.
func LogEntryFromFields(f map[string]any) (LogEntry, error) {
	var e LogEntry
	var err error
	conn := make(map[string]any, len(f))
	for _, k := range sortedKeys(f) {
		v := f[k]
		switch k {
		case "action":
			var a string
			a, err = asString(k, v)
			e.Verdict.Action = Action(a)
		case "rule_id":
			e.Verdict.RuleID, err = asString(k, v)
		case "reason":
			e.Verdict.Reason, err = asString(k, v)
		case "monitor":
			e.Verdict.Monitor, err = asBool(k, v)
		case "unasked":
			e.Verdict.Unasked, err = asBool(k, v)
		case "answered":
			e.Verdict.Answered, err = asBool(k, v)
		default:
			conn[k] = v
		}
		if err != nil {
			return LogEntry{}, err
		}
	}
	e.Connection, err = ConnectionFromFields(conn)
	if err != nil {
		return LogEntry{}, err
	}
	return e, nil
}

func putTime(f map[string]any, k string, t time.Time) {
	if !t.IsZero() {
		f[k] = t.UTC().Format(time.RFC3339Nano)
	}
}

func clampU32(n int) uint32 {
	switch {
	case n < 0:
		return 0
	case int64(n) > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(n)
}

func asCount(k string, v any) (int, error) {
	n, err := asInt(k, v, 0, math.MaxUint32)
	return int(n), err
}

func asStrings(k string, v any) ([]string, error) {
	switch x := v.(type) {
	case []string:
		return slices.Clone(x), nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, typeErr(k, "a list of strings", e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, typeErr(k, "a list of strings", v)
}

func sortedKeys(f map[string]any) []string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Explanation says which rules match a connection and which one decides:
// what `tollgate rules explain` shows.
type Explanation struct {
	Text       string      // the deciding rule and why, or why the default applies
	Candidates []Candidate // every matching rule, in precedence order: the first decides
}

// Candidate is one matching rule of an Explanation.
type Candidate struct {
	Rule        Rule
	Specificity int
	HostMatched string // the connection's name a host rule matched
	LostBy      string // how the candidate before it won ("" for the first)
}

// Fields encodes c: rule (nested field map), int32 specificity, string
// host_matched lost_by.
func (c Candidate) Fields() map[string]any {
	f := map[string]any{"rule": c.Rule.Fields(), "specificity": int32(min(max(c.Specificity, math.MinInt32), math.MaxInt32))}
	if c.HostMatched != "" {
		f["host_matched"] = c.HostMatched
	}
	if c.LostBy != "" {
		f["lost_by"] = c.LostBy
	}
	return f
}

// CandidateFromFields decodes what Candidate.Fields makes; unknown fields
// are ignored.
func CandidateFromFields(f map[string]any) (Candidate, error) {
	var c Candidate
	var err error
	for _, k := range sortedKeys(f) {
		v := f[k]
		switch k {
		case "rule":
			m, ok := v.(map[string]any)
			if !ok {
				return Candidate{}, typeErr(k, "a field map", v)
			}
			c.Rule, err = RuleFromFields(m)
		case "specificity":
			var n int64
			n, err = asInt(k, v, math.MinInt32, math.MaxInt32)
			c.Specificity = int(n)
		case "host_matched":
			c.HostMatched, err = asString(k, v)
		case "lost_by":
			c.LostBy, err = asString(k, v)
		}
		if err != nil {
			return Candidate{}, err
		}
	}
	return c, nil
}
