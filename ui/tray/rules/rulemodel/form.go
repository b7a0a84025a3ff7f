package rulemodel

import (
	"errors"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// Form is the add/edit form's text, one string per field as typed. Empty
// means "not set" (for Port: any port; for Proto and Direction: both).
// Values are read by the shared parsers (shared.RuleFromFields, then
// Normalize and Validate): the form has no syntax of its own.
type Form struct {
	Name      string
	Action    string // allow | deny | reject; "" is refused by the validator
	Lifetime  string // session | until | forever (process/once only as the rule had them)
	Until     string // RFC 3339, for lifetime until
	Exe       string
	Host      string
	IP        string
	Port      string // "443" or "8000-8100"
	LocalPort string
	Proto     string
	Direction string
	Note      string
	Enabled   bool
	// System makes a system rule (owner root: it applies to every user;
	// the daemon asks for an administrator) instead of one of the base
	// rule's owner.
	System bool
}

// FormFields are the shared field names the form edits. Fields of a rule
// the form does not show (exe_sha256, cmdline, unit, uid, gid, iface,
// priority, owner) are kept as they were.
var FormFields = []string{"name", "action", "lifetime", "until", "exe", "host", "ip", "port", "local_port", "proto", "direction", "note", "enabled"}

// FormFromRule fills a form with r's fields. Times are shown in loc (nil =
// time.Local).
func FormFromRule(r shared.Rule, loc *time.Location) Form {
	if loc == nil {
		loc = time.Local
	}
	m := &r.Match
	f := Form{
		Name:      r.Name,
		Action:    string(r.Action),
		Lifetime:  string(r.Lifetime),
		Exe:       m.Exe,
		Host:      m.Host,
		IP:        shared.FormatIP(m.IP),
		Proto:     string(m.Proto),
		Direction: string(m.Direction),
		Note:      r.Note,
		Enabled:   r.Enabled,
		System:    r.Owner == shared.OwnerSystem,
	}
	if f.Lifetime == "" {
		f.Lifetime = string(shared.LifetimeForever)
	}
	if !r.Until.IsZero() {
		f.Until = r.Until.In(loc).Format(time.RFC3339)
	}
	if !m.Port.IsAny() {
		f.Port = m.Port.String()
	}
	if !m.LocalPort.IsAny() {
		f.LocalPort = m.LocalPort.String()
	}
	return f
}

// Rule turns the form into a rule based on base (the rule being edited, or
// the template of a new one): the form's fields replace base's, the others
// stay. The result is normalized and valid, or err is the shared parser's
// or validator's *shared.FieldError (its Field names the form field).
// Bookkeeping fields (hits, source...) are dropped: the daemon keeps them.
func (f Form) Rule(base shared.Rule) (shared.Rule, error) {
	fields := base.Fields()
	for k := range fields {
		if shared.IsBookkeepingField(k) {
			delete(fields, k)
		}
	}
	set := func(k, v string) {
		if v == "" {
			delete(fields, k)
			return
		}
		fields[k] = v
	}
	set("name", f.Name)
	set("action", f.Action)
	set("lifetime", f.Lifetime)
	set("until", f.Until)
	set("exe", f.Exe)
	set("host", f.Host)
	set("ip", f.IP)
	set("port", f.Port)
	set("local_port", f.LocalPort)
	set("proto", f.Proto)
	set("direction", f.Direction)
	set("note", f.Note)
	fields["enabled"] = f.Enabled
	r, err := shared.RuleFromFields(fields)
	if err != nil {
		return shared.Rule{}, err
	}
	// The process binding is bookkeeping the daemon keeps and will not
	// take back from a client: a rule cannot be sent with lifetime
	// process. Say so here rather than let the daemon refuse a pid.
	if r.Lifetime == shared.LifetimeProcess {
		return shared.Rule{}, &shared.FieldError{Field: "lifetime",
			Msg: "a rule for one process cannot be saved with that lifetime: choose another lifetime, or delete the rule"}
	}
	if f.System {
		r.Owner = shared.OwnerSystem
	}
	r.Normalize()
	if err := r.Validate(); err != nil {
		return shared.Rule{}, err
	}
	return r, nil
}

// FieldOf returns the field a form error is about ("" when it is not a
// *shared.FieldError).
func FieldOf(err error) string {
	var fe *shared.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// Lifetimes are the lifetimes the form offers for rule r: session, until
// and forever, and r's own when it is another (process, once), which only
// a prompt answer makes.
func Lifetimes(r shared.Rule) []string {
	ls := []string{string(shared.LifetimeForever), string(shared.LifetimeSession), string(shared.LifetimeUntil)}
	switch r.Lifetime {
	case shared.LifetimeProcess, shared.LifetimeOnce:
		ls = append(ls, string(r.Lifetime))
	}
	return ls
}

// WritableFields are r's fields as AddRuleFields takes them: no
// bookkeeping, and the owner always said ("system" for a system rule;
// shared.Rule.Fields leaves owner 0 out, which the daemon reads as "the
// caller").
func WritableFields(r shared.Rule) map[string]any {
	f := r.Fields()
	for k := range f {
		if shared.IsBookkeepingField(k) {
			delete(f, k)
		}
	}
	delete(f, "id")
	if r.Owner == shared.OwnerSystem {
		f["owner"] = "system"
	}
	return f
}
