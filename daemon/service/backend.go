package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tollgate-fw/tollgate/daemon/bus"
	"github.com/tollgate-fw/tollgate/daemon/config"
	"github.com/tollgate-fw/tollgate/daemon/pending"
	"github.com/tollgate-fw/tollgate/daemon/queue"
	"github.com/tollgate-fw/tollgate/daemon/rulebook"
	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/daemon/rulesdir"
	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// The Service is the bus's Backend: the bus layer has checked the caller's
// rights as its Backend documents; the rule book checks ownership again.
var _ bus.Backend = (*Service)(nil)

// actor is who a bus caller is to the rule book.
func actor(c bus.Caller) rulebook.Actor {
	return rulebook.Actor{UID: c.UID, Admin: c.Admin || c.UID == 0}
}

// busError turns the rule book's and broker's errors into the bus's.
func busError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rulebook.ErrNotFound), errors.Is(err, pending.ErrNotFound):
		return fmt.Errorf("%w: %w", dbus.ErrNotFound, err)
	case errors.Is(err, rulebook.ErrNotPermitted), errors.Is(err, rulebook.ErrReadOnly), errors.Is(err, pending.ErrNotEntitled):
		return fmt.Errorf("%w: %w", dbus.ErrNotAuthorized, err)
	case errors.Is(err, rulebook.ErrInvalid), errors.Is(err, rulebook.ErrLimit):
		return fmt.Errorf("%w: %w", dbus.ErrInvalidArgument, err)
	}
	return err
}

// Status reports the daemon's state as c may see it.
func (s *Service) Status(ctx context.Context, c bus.Caller) (shared.Status, error) {
	a := actor(c)
	uid := int64(c.UID)
	if a.Admin {
		uid = -1
	}
	es := s.engine.Stats()
	st := shared.Status{
		Mode:          string(s.engine.Mode()),
		Version:       s.version,
		DefaultAction: s.cfg.DefaultAction,
		Rules:         s.book.Count(a),
		Pending:       len(s.broker.List(uid)),
		Agents:        len(s.srv.Agents()),
		Decided:       es.Decided,
		Allowed:       es.Allowed,
		Denied:        es.Denied + es.Rejected,
	}
	if qs, err := queue.ReadStats(s.cfg.QueueNum); err == nil {
		st.QueueWaiting, st.QueueDropped, st.QueueUserDropped = uint64(qs.Waiting), uint64(qs.QueueDropped), uint64(qs.UserDropped)
	}
	return st, nil
}

// SetMode puts a mode in force until the daemon restarts (the configuration
// file keeps the mode it starts in).
func (s *Service) SetMode(ctx context.Context, c bus.Caller, mode string) error {
	m, err := config.ParseMode(mode)
	if err != nil {
		return fmt.Errorf("%w: %w", dbus.ErrInvalidArgument, err)
	}
	s.engine.SetMode(m)
	s.log.Info("mode changed", "mode", m, "by_uid", c.UID)
	if st, err := s.Status(ctx, bus.Caller{UID: 0, Admin: true}); err == nil {
		s.srv.StatusChanged(st)
	}
	return nil
}

// RulesPage returns a page of the rules c may see, sorted by id.
func (s *Service) RulesPage(ctx context.Context, c bus.Caller, after string, limit int) ([]shared.Rule, bool, error) {
	rs, more := s.book.Page(actor(c), after, limit)
	return rs, more, nil
}

// Rule returns one rule.
func (s *Service) Rule(ctx context.Context, id string) (shared.Rule, error) {
	r, ok := s.book.Get(id)
	if !ok {
		return r, fmt.Errorf("%w: rule %q", dbus.ErrNotFound, id)
	}
	return r, nil
}

// AddRule keeps a new rule.
func (s *Service) AddRule(ctx context.Context, c bus.Caller, r shared.Rule) (string, error) {
	kept, err := s.book.Add(actor(c), r)
	if err != nil {
		return "", busError(err)
	}
	s.log.Info("rule added", "id", kept.ID, "by_uid", c.UID, "owner", kept.Owner, "action", kept.Action, "lifetime", kept.Lifetime)
	s.srv.RulesChanged()
	return kept.ID, nil
}

// UpdateRule replaces a rule.
func (s *Service) UpdateRule(ctx context.Context, c bus.Caller, id string, r shared.Rule) error {
	if _, err := s.book.Update(actor(c), id, r); err != nil {
		return busError(err)
	}
	s.log.Info("rule updated", "id", id, "by_uid", c.UID)
	s.srv.RulesChanged()
	return nil
}

// DeleteRule removes a rule.
func (s *Service) DeleteRule(ctx context.Context, c bus.Caller, id string) error {
	if err := s.book.Delete(actor(c), id); err != nil {
		return busError(err)
	}
	s.log.Info("rule deleted", "id", id, "by_uid", c.UID)
	s.srv.RulesChanged()
	return nil
}

// ExportRules writes the stored rules c may see as a rules file that
// ImportRules (and rules.d) read back: the daemon's bookkeeping is left out.
func (s *Service) ExportRules(ctx context.Context, c bus.Caller) (string, error) {
	rs := s.book.Export(actor(c))
	doc := struct {
		Rule []map[string]any `toml:"rule"`
	}{}
	for _, r := range rs {
		f := r.Fields()
		for k := range f {
			if shared.IsBookkeepingField(k) {
				delete(f, k)
			}
		}
		doc.Rule = append(doc.Rule, f)
	}
	var b bytes.Buffer
	b.WriteString("# Tollgate rules, exported by tollgated " + s.version + "\n")
	if err := toml.NewEncoder(&b).Encode(doc); err != nil {
		return "", fmt.Errorf("encode rules: %w", err)
	}
	return b.String(), nil
}

// ImportRules keeps a rules file's rules, all or nothing; importing the same
// file twice changes nothing. It returns how many rules changed.
func (s *Service) ImportRules(ctx context.Context, c bus.Caller, text string) (int, error) {
	if len(text) > maxImportBytes {
		return 0, fmt.Errorf("%w: rules file larger than %d bytes", dbus.ErrInvalidArgument, maxImportBytes)
	}
	rs, errs := rulesdir.Parse("import", []byte(text))
	if len(errs) > 0 {
		return 0, fmt.Errorf("%w: nothing imported: %w", dbus.ErrInvalidArgument, errors.Join(errs...))
	}
	clearFileIDs(rs)
	n, err := s.book.Import(actor(c), rs)
	if err != nil {
		return 0, busError(err)
	}
	if n > 0 {
		s.log.Info("rules imported", "changed", n, "by_uid", c.UID)
		s.srv.RulesChanged()
	}
	return n, nil
}

// clearFileIDs drops the "file:name" IDs rulesdir gives rules that have
// none: stored rules get IDs of their own (from their content).
func clearFileIDs(rs []shared.Rule) {
	for i := range rs {
		if strings.Contains(rs[i].ID, ":") {
			rs[i].ID = ""
		}
	}
}

// AgentRegistered notes a new agent; the bus layer keeps the registry.
func (s *Service) AgentRegistered(c bus.Caller) {
	s.log.Info("agent registered", "name", c.Name, "uid", c.UID)
}

// AgentGone ends what an agent held: pending groups only it could answer
// get the default action at once, and its session rules end.
func (s *Service) AgentGone(name string) {
	groups := s.broker.AgentGone(name)
	rules := s.book.EndSession(name)
	if rules > 0 {
		s.srv.RulesChanged()
	}
	s.log.Info("agent gone", "name", name, "pending_ended", groups, "session_rules_ended", rules)
}

func toPending(g pending.Group) shared.Pending {
	return shared.Pending{ID: g.ID, Connection: g.Conn, Count: g.Count, Since: g.Since, Deadline: g.Deadline}
}

// PendingGroups returns every open group (the bus layer filters by caller).
func (s *Service) PendingGroups(ctx context.Context) ([]shared.Pending, error) {
	gs := s.broker.List(-1)
	out := make([]shared.Pending, len(gs))
	for i, g := range gs {
		out[i] = toPending(g)
	}
	return out, nil
}

// PendingGroup returns one open group.
func (s *Service) PendingGroup(ctx context.Context, id uint64) (shared.Pending, error) {
	g, ok := s.broker.Get(id)
	if !ok {
		return shared.Pending{}, fmt.Errorf("%w: pending connection %d", dbus.ErrNotFound, id)
	}
	return toPending(g), nil
}

// Answer settles a pending group: a rule is made for the answer's lifetime
// and scope (none for once), and every held packet of the group gets the
// verdict.
func (s *Service) Answer(ctx context.Context, c bus.Caller, a shared.Answer) error {
	act := actor(c)
	g, ok := s.broker.Get(a.PendingID)
	if !ok {
		return fmt.Errorf("%w: pending connection %d (answered, or timed out)", dbus.ErrNotFound, a.PendingID)
	}
	if !act.Admin && !containsString(g.Agents, c.Name) {
		return fmt.Errorf("%w: pending connection %d was not offered to you", dbus.ErrNotAuthorized, a.PendingID)
	}
	if a.System && !act.Admin {
		return fmt.Errorf("%w: system rules need admin rights", dbus.ErrNotAuthorized)
	}
	v := shared.Verdict{Action: a.Action, Answered: true,
		Reason: fmt.Sprintf("answered by uid %d: %s %s", c.UID, a.Action, a.Lifetime)}
	if a.Lifetime != shared.LifetimeOnce {
		r, err := ruleFromAnswer(g.Conn, a, c)
		if err != nil {
			return fmt.Errorf("%w: %w", dbus.ErrInvalidArgument, err)
		}
		kept, err := s.book.Add(act, r)
		if err != nil {
			return busError(err)
		}
		v.RuleID = kept.ID
		v.Reason += fmt.Sprintf(", scope %s (rule %s)", a.Scope, kept.ID)
		s.srv.RulesChanged()
	}
	if _, err := s.broker.Answer(a.PendingID, c.Name, act.Admin, v); err != nil {
		// A rule already made stands: the user's decision applies to the
		// next attempt even if this group timed out meanwhile.
		return busError(err)
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ruleFromAnswer makes the rule an answer asks for, from the group's
// connection: the scope says how wide (this executable to this host and
// port, to this host, to anywhere; or any executable to this host).
func ruleFromAnswer(conn shared.Connection, a shared.Answer, c bus.Caller) (shared.Rule, error) {
	r := shared.Rule{
		Action:   a.Action,
		Lifetime: a.Lifetime,
		Until:    a.Until,
		Owner:    c.UID,
		Enabled:  true,
		Match:    shared.Match{Direction: conn.Direction, Proto: conn.Proto},
	}
	if a.System {
		r.Owner = shared.OwnerSystem
	}
	switch a.Lifetime {
	case shared.LifetimeSession:
		r.Session = c.Name
	case shared.LifetimeProcess:
		if conn.PID == 0 {
			return r, errors.New("lifetime process: the process of this connection is unknown")
		}
		r.PID, r.PIDStart = conn.PID, conn.PIDStart
	}
	wantExe := a.Scope != shared.ScopeAnyExeHost
	wantHost := a.Scope != shared.ScopeExeAny
	wantPort := a.Scope == shared.ScopeExeHostPort
	if wantExe {
		switch {
		case conn.Exe != "":
			r.Match.Exe = conn.Exe
		case conn.ExeSHA256 != "":
			r.Match.ExeSHA256 = conn.ExeSHA256
		default:
			return r, errors.New("the executable of this connection is unknown: answer with scope any-exe-host, or once")
		}
	}
	if wantHost {
		if len(conn.Hosts) > 0 && conn.HostSource != shared.HostFromAny && conn.Direction == shared.DirectionOut {
			r.Match.Host = conn.Hosts[0]
		} else if conn.RemoteIP.IsValid() {
			r.Match.IP = netip.PrefixFrom(conn.RemoteIP, conn.RemoteIP.BitLen())
		}
	}
	if wantPort {
		if conn.Direction == shared.DirectionIn {
			r.Match.LocalPort = shared.PortRange{Lo: conn.LocalPort, Hi: conn.LocalPort}
		} else if conn.RemotePort != 0 {
			r.Match.Port = shared.PortRange{Lo: conn.RemotePort, Hi: conn.RemotePort}
		}
	}
	who := conn.Exe
	if who == "" {
		who = "any app"
	}
	r.Name = fmt.Sprintf("%s %s to %s (answered)", a.Action, who, describeRemote(r.Match))
	return r, nil
}

func describeRemote(m shared.Match) string {
	var parts []string
	switch {
	case m.Host != "":
		parts = append(parts, m.Host)
	case m.IP.IsValid():
		parts = append(parts, shared.FormatIP(m.IP))
	default:
		parts = append(parts, "anywhere")
	}
	if !m.Port.IsAny() {
		parts = append(parts, "port "+m.Port.String())
	}
	if !m.LocalPort.IsAny() {
		parts = append(parts, "local port "+m.LocalPort.String())
	}
	return strings.Join(parts, " ")
}

// RecentConnections returns log entries, newest first.
func (s *Service) RecentConnections(ctx context.Context, c bus.Caller, f shared.LogFilter) ([]shared.LogEntry, error) {
	const defaultLimit, maxLimit = 100, 10_000
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	sf := store.LogFilter{Limit: limit, Since: f.Since, Action: f.Action, Exe: f.Exe, Host: f.Host}
	if !actor(c).Admin {
		uid := int64(c.UID)
		sf.UID = &uid
	} else if f.UID != nil {
		uid := int64(*f.UID)
		sf.UID = &uid
	}
	entries, err := s.store.Log(sf)
	if err != nil {
		return nil, fmt.Errorf("read connection log: %w", err)
	}
	return entries, nil
}

// explainPID stands for the process of a connection asked about by
// Explain with an executable but no pid: no real pid is ever this large.
const explainPID = math.MaxInt32

// Explain says which rules match a (possibly hypothetical) connection and
// which one decides, as the engine would decide it now.
func (s *Service) Explain(ctx context.Context, c bus.Caller, conn shared.Connection) (shared.Explanation, error) {
	if conn.PID == 0 && (conn.Exe != "" || conn.ExeSHA256 != "" || conn.Unit != "") {
		conn.PID = explainPID // a process with these facts
		conn.Attribution = shared.AttributedProcess
	}
	if conn.Direction == "" {
		conn.Direction = shared.DirectionOut
	}
	set := s.engine.Rules()
	now := time.Now()
	d := set.Decide(&conn, now)
	ex := shared.Explanation{Text: d.Explanation}
	if d.Rule == nil {
		ex.Text = fmt.Sprintf("no rule matches: the user's agent would be asked, else the default action %s applies", s.cfg.DefaultAction)
	}
	for _, cand := range set.Explain(&conn, now) {
		lost := ""
		if cand.LostBy != rules.ByNothing {
			lost = cand.LostBy.String()
		}
		ex.Candidates = append(ex.Candidates, shared.Candidate{Rule: *cand.Rule, Specificity: cand.Specificity,
			HostMatched: cand.HostMatched, LostBy: lost})
	}
	return ex, nil
}
