package bus

import (
	"context"
	"errors"
	"fmt"
	"math"

	godbus "github.com/godbus/dbus/v5"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// object is what is exported at dbus.ObjectPath: exactly the methods of
// the XML, nothing else exported (godbus exports every method of it).
type object struct{ s *Server }

type (
	fieldMap  = map[string]godbus.Variant
	fieldMaps = []map[string]godbus.Variant
)

// call is one method call in progress.
type call struct {
	ctx    context.Context
	cancel context.CancelFunc
	caller Caller
	peer   peer
	s      *Server
	name   string
	method string
}

// begin identifies the caller and applies the rate limit.
func (s *Server) begin(sender godbus.Sender, method string) (*call, error) {
	connCtx, p := s.callContext()
	if connCtx == nil || p == nil {
		return nil, fmt.Errorf("%w: the daemon is reconnecting to the bus", dbus.ErrBusy)
	}
	ctx, cancel := context.WithTimeout(connCtx, s.opts.CallTimeout)
	uid, err := p.UnixUser(ctx, string(sender))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: cannot tell who is calling: %v", dbus.ErrNotAuthorized, err)
	}
	if uid != 0 && !s.limit.allow(uid) {
		cancel()
		s.log.Debug("rate limit", "uid", uid, "method", method)
		return nil, fmt.Errorf("%w: too many calls from uid %d, try again in a moment", dbus.ErrBusy, uid)
	}
	return &call{
		ctx: ctx, cancel: cancel, peer: p, s: s, method: method, name: string(sender),
		caller: Caller{UID: uid, Name: string(sender), Admin: uid == 0},
	}, nil
}

// requireAdmin makes sure the caller is root or allowed org.tollgate.manage
// (polkit may ask for a password); what says what the right is needed for.
func (c *call) requireAdmin(what string) error {
	if c.caller.Admin {
		return nil
	}
	if c.s.opts.PolkitDisabled {
		return fmt.Errorf("%w: %s needs root", dbus.ErrNotAuthorized, what)
	}
	ok, present, err := c.peer.Authorized(c.ctx, c.name, ActionManage, true)
	switch {
	case err != nil:
		c.s.log.Error("polkit check", "action", ActionManage, "caller", c.name, "err", err)
		return fmt.Errorf("%w: %s needs %s and polkit could not be asked: %v", dbus.ErrNotAuthorized, what, ActionManage, err)
	case !present:
		return fmt.Errorf("%w: %s needs root (polkit is not running)", dbus.ErrNotAuthorized, what)
	case !ok:
		return fmt.Errorf("%w: %s needs the %s authorization", dbus.ErrNotAuthorized, what, ActionManage)
	}
	c.caller.Admin = true
	return nil
}

// requireUser asks polkit whether the caller may do a user action
// (org.tollgate.answer, org.tollgate.own-rules: yes for active local users
// by default). Root, and every user when polkit is absent or disabled, may.
func (c *call) requireUser(action, what string) error {
	if c.caller.UID == 0 || c.s.opts.PolkitDisabled {
		return nil
	}
	ok, present, err := c.peer.Authorized(c.ctx, c.name, action, true)
	switch {
	case !present && err == nil:
		return nil
	case err != nil:
		c.s.log.Error("polkit check", "action", action, "caller", c.name, "err", err)
		return fmt.Errorf("%w: %s needs %s and polkit could not be asked: %v", dbus.ErrNotAuthorized, what, action, err)
	case !ok:
		return fmt.Errorf("%w: %s needs the %s authorization", dbus.ErrNotAuthorized, what, action)
	}
	return nil
}

// end logs refusals and turns the error into the D-Bus reply.
func (c *call) end(err error) *godbus.Error {
	c.cancel()
	if err == nil {
		return nil
	}
	lvl := "debug"
	if errors.Is(err, dbus.ErrNotAuthorized) {
		lvl = "warn"
	}
	if lvl == "warn" {
		c.s.log.Warn("call refused", "method", c.method, "uid", c.caller.UID, "caller", c.name, "err", err)
	} else {
		c.s.log.Debug("call failed", "method", c.method, "uid", c.caller.UID, "caller", c.name, "err", err)
	}
	return dbus.ToDBusError(err)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", dbus.ErrInvalidArgument, fmt.Sprintf(format, args...))
}

func (o *object) GetStatus(sender godbus.Sender) (fieldMap, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodGetStatus)
	if err != nil {
		return nil, dbus.ToDBusError(err)
	}
	st, err := o.s.backend.Status(c.ctx, c.caller)
	if err != nil {
		return nil, c.end(err)
	}
	return dbus.Variants(st.Fields()), c.end(nil)
}

func (o *object) SetMode(sender godbus.Sender, mode string) *godbus.Error {
	c, err := o.s.begin(sender, dbus.MethodSetMode)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	switch mode {
	case "enforcing", "monitor", "disabled":
	default:
		return c.end(invalid("mode %.64q: want enforcing, monitor or disabled", mode))
	}
	if err := c.requireAdmin("changing the mode"); err != nil {
		return c.end(err)
	}
	return c.end(o.s.backend.SetMode(c.ctx, c.caller, mode))
}

// visibleRule reports whether a caller who is not admin may see r.
func visibleRule(c Caller, r shared.Rule) bool {
	return c.Admin || r.Owner == shared.OwnerSystem || r.Owner == c.UID
}

// ListRules returns every rule the caller may see in one reply, unless that
// would pass dbus.MaxReplyBytes: then the caller is told to page.
func (o *object) ListRules(sender godbus.Sender) (fieldMaps, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodListRules)
	if err != nil {
		return nil, dbus.ToDBusError(err)
	}
	out, _, cut, err := c.rules("", math.MaxInt, dbus.MaxReplyBytes)
	if err != nil {
		return nil, c.end(err)
	}
	if cut {
		return nil, c.end(invalid("more than %d rules, over %d MiB: more than one reply carries; page through them with %s",
			len(out), dbus.MaxReplyBytes>>20, dbus.MethodListRulesPage))
	}
	return out, c.end(nil)
}

// ListRulesPage returns one page of the rules the caller may see, by id:
// query after (s, "" = from the first) and limit (u; 0 = dbus.PageDefault, at
// most dbus.PageMax), and the id to ask after next ("" after the last page).
func (o *object) ListRulesPage(sender godbus.Sender, raw fieldMap) (fieldMaps, string, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodListRulesPage)
	if err != nil {
		return nil, "", dbus.ToDBusError(err)
	}
	q, err := dbus.Fields(raw)
	if err != nil {
		return nil, "", c.end(fmt.Errorf("query: %w", err))
	}
	after, limit := "", dbus.PageDefault
	for k, v := range q {
		switch k {
		case "after":
			s, ok := v.(string)
			if !ok || len(s) > dbus.MaxIDLen {
				return nil, "", c.end(invalid("query: after must be a rule id (a string of at most %d bytes)", dbus.MaxIDLen))
			}
			after = s
		case "limit":
			n, ok := v.(uint32)
			if !ok {
				return nil, "", c.end(invalid("query: limit must be a uint32"))
			}
			if n > 0 {
				limit = min(int(n), dbus.PageMax)
			}
		default:
			return nil, "", c.end(invalid("query: unknown field %.64q (after, limit)", k))
		}
	}
	out, next, _, err := c.rules(after, limit, dbus.PageBytes)
	if err != nil {
		return nil, "", c.end(err)
	}
	return out, next, c.end(nil)
}

// rules collects, by id after after, up to limit of the rules the caller
// may see, while their encoding stays within maxBytes (one rule at least).
// next is the id to continue after ("" when no rule follows); cut says the
// byte bound, not the limit or the end, stopped it.
func (c *call) rules(after string, limit, maxBytes int) (out fieldMaps, next string, cut bool, err error) {
	size := 8
	for len(out) < limit {
		rs, more, err := c.s.backend.RulesPage(c.ctx, c.caller, after, min(limit-len(out), dbus.PageMax))
		if err != nil {
			return nil, "", false, err
		}
		for _, r := range rs {
			if !visibleRule(c.caller, r) {
				after = r.ID
				continue
			}
			f := r.Fields()
			n := 8 + dbus.WireSize(f)
			if len(out) > 0 && size+n > maxBytes {
				return out, after, true, nil
			}
			size += n
			out = append(out, dbus.Variants(f))
			after = r.ID
		}
		if !more {
			return out, "", false, nil
		}
	}
	return out, after, false, nil
}

// GetRule returns one rule the caller may see; one it may not see is not
// found (its existence is not told).
func (o *object) GetRule(sender godbus.Sender, id string) (fieldMap, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodGetRule)
	if err != nil {
		return nil, dbus.ToDBusError(err)
	}
	if err := checkRuleID(id); err != nil {
		return nil, c.end(err)
	}
	r, err := o.s.backend.Rule(c.ctx, id)
	if err == nil && !visibleRule(c.caller, r) {
		err = fmt.Errorf("%w: rule %.64q", dbus.ErrNotFound, id)
	}
	if err != nil {
		return nil, c.end(err)
	}
	return dbus.Variants(r.Fields()), c.end(nil)
}

// decodeRule reads a rule a client sent: bounded, no bookkeeping fields,
// normalized and valid. ownerSet says whether the owner field was given.
func decodeRule(raw fieldMap) (r shared.Rule, ownerSet bool, err error) {
	f, err := dbus.Fields(raw)
	if err != nil {
		return shared.Rule{}, false, fmt.Errorf("rule: %w", err)
	}
	for k := range f {
		if shared.IsBookkeepingField(k) {
			return shared.Rule{}, false, invalid("rule: field %q is kept by the daemon", k)
		}
	}
	delete(f, "id") // the id is the daemon's (UpdateRule takes it apart)
	r, err = shared.RuleFromFields(f)
	if err != nil {
		return shared.Rule{}, false, invalid("rule: %v", err)
	}
	r.Normalize()
	if err := r.Validate(); err != nil {
		return shared.Rule{}, false, invalid("rule: %v", err)
	}
	_, ownerSet = f["owner"]
	return r, ownerSet, nil
}

// settleOwner decides the owner of a rule the caller makes: the caller's
// own uid unless it names another (or system) owner, which needs admin.
// keep is the owner when none is given (UpdateRule: the existing one).
func (c *call) settleOwner(r *shared.Rule, ownerSet bool, keep uint32) error {
	if !ownerSet {
		r.Owner = keep
	}
	if r.Owner == c.caller.UID && r.Owner != shared.OwnerSystem {
		return c.requireUser(ActionOwnRules, "a rule of your own")
	}
	if r.Owner == shared.OwnerSystem {
		return c.requireAdmin("a system rule")
	}
	return c.requireAdmin(fmt.Sprintf("a rule of uid %d", r.Owner))
}

func (o *object) AddRule(sender godbus.Sender, raw fieldMap) (string, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodAddRule)
	if err != nil {
		return "", dbus.ToDBusError(err)
	}
	r, ownerSet, err := decodeRule(raw)
	if err != nil {
		return "", c.end(err)
	}
	keep := c.caller.UID // root without owner: uid 0 = a system rule
	if err := c.settleOwner(&r, ownerSet, keep); err != nil {
		return "", c.end(err)
	}
	id, err := o.s.backend.AddRule(c.ctx, c.caller, r)
	if err != nil {
		return "", c.end(err)
	}
	return id, c.end(nil)
}

// checkRuleID refuses what cannot be a rule id before any lookup.
func checkRuleID(id string) error {
	if id == "" || len(id) > dbus.MaxIDLen {
		return invalid("rule id of %d bytes (1-%d)", len(id), dbus.MaxIDLen)
	}
	return nil
}

// ownedRule fetches rule id and checks the caller may change it.
func (c *call) ownedRule(id string) (shared.Rule, error) {
	if err := checkRuleID(id); err != nil {
		return shared.Rule{}, err
	}
	old, err := c.s.backend.Rule(c.ctx, id)
	if err != nil {
		return shared.Rule{}, err
	}
	if !visibleRule(c.caller, old) {
		// Another user's rule: as if it did not exist, unless admin.
		if c.requireAdmin("another user's rule") != nil {
			return shared.Rule{}, fmt.Errorf("%w: no rule %q", dbus.ErrNotFound, id)
		}
	}
	if old.ReadOnly {
		return shared.Rule{}, fmt.Errorf("%w: rule %q comes from %s and is read-only: edit the file instead", dbus.ErrNotAuthorized, id, old.Source)
	}
	if old.Owner == shared.OwnerSystem || old.Owner != c.caller.UID {
		if err := c.requireAdmin("changing a system rule"); err != nil {
			return shared.Rule{}, err
		}
		return old, nil
	}
	if err := c.requireUser(ActionOwnRules, "changing a rule of your own"); err != nil {
		return shared.Rule{}, err
	}
	return old, nil
}

func (o *object) UpdateRule(sender godbus.Sender, id string, raw fieldMap) *godbus.Error {
	c, err := o.s.begin(sender, dbus.MethodUpdateRule)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	r, ownerSet, err := decodeRule(raw)
	if err != nil {
		return c.end(err)
	}
	old, err := c.ownedRule(id)
	if err != nil {
		return c.end(err)
	}
	if err := c.settleOwner(&r, ownerSet, old.Owner); err != nil {
		return c.end(err)
	}
	r.ID = id
	return c.end(o.s.backend.UpdateRule(c.ctx, c.caller, id, r))
}

func (o *object) DeleteRule(sender godbus.Sender, id string) *godbus.Error {
	c, err := o.s.begin(sender, dbus.MethodDeleteRule)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	if _, err := c.ownedRule(id); err != nil {
		return c.end(err)
	}
	return c.end(o.s.backend.DeleteRule(c.ctx, c.caller, id))
}

func (o *object) ExportRules(sender godbus.Sender) (string, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodExportRules)
	if err != nil {
		return "", dbus.ToDBusError(err)
	}
	s, err := o.s.backend.ExportRules(c.ctx, c.caller)
	if err != nil {
		return "", c.end(err)
	}
	if len(s) > dbus.MaxReplyBytes {
		return "", c.end(invalid("the export is %d MiB, more than one reply carries (%d MiB); export fewer rules (ImportRules takes %d MiB a call)",
			len(s)>>20, dbus.MaxReplyBytes>>20, dbus.MaxImportBytes>>20))
	}
	return s, c.end(nil)
}

func (o *object) ImportRules(sender godbus.Sender, text string) (uint32, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodImportRules)
	if err != nil {
		return 0, dbus.ToDBusError(err)
	}
	if len(text) > dbus.MaxImportBytes {
		return 0, c.end(invalid("rules file of %d bytes (at most %d)", len(text), dbus.MaxImportBytes))
	}
	if err := c.requireAdmin("importing rules"); err != nil {
		return 0, c.end(err)
	}
	n, err := o.s.backend.ImportRules(c.ctx, c.caller, text)
	if err != nil {
		return 0, c.end(err)
	}
	return clampU32(n), c.end(nil)
}

func clampU32(n int) uint32 {
	if n < 0 {
		return 0
	}
	if uint64(n) > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(n)
}

func (o *object) RegisterAgent(sender godbus.Sender) *godbus.Error {
	c, err := o.s.begin(sender, dbus.MethodRegisterAgent)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	s := o.s
	s.mu.Lock()
	if _, ok := s.agents[c.name]; ok {
		s.mu.Unlock()
		return c.end(nil) // already an agent: nothing changes
	}
	n := 0
	for _, a := range s.agents {
		if a.uid == c.caller.UID {
			n++
		}
	}
	if n >= s.opts.MaxAgentsPerUID {
		s.mu.Unlock()
		return c.end(fmt.Errorf("%w: uid %d has %d agents already", dbus.ErrBusy, c.caller.UID, n))
	}
	s.agents[c.name] = agent{uid: c.caller.UID, admin: c.caller.Admin}
	conn := s.conn
	s.mu.Unlock()
	s.log.Info("agent registered", "name", c.name, "uid", c.caller.UID)
	s.backend.AgentRegistered(c.caller)
	// The caller may have left before it was recorded: then no
	// NameOwnerChanged will come for it any more.
	if has, err := c.peer.HasOwner(c.ctx, c.name); err == nil && !has {
		s.forgetAgent(conn, c.name)
	}
	return c.end(nil)
}

func (o *object) UnregisterAgent(sender godbus.Sender) *godbus.Error {
	c, err := o.s.begin(sender, dbus.MethodUnregisterAgent)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	conn, _ := o.s.current()
	if !o.s.forgetAgent(conn, c.name) {
		return c.end(fmt.Errorf("%w: this connection is not a registered agent", dbus.ErrNotFound))
	}
	return c.end(nil)
}

func (o *object) ListPending(sender godbus.Sender) (fieldMaps, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodListPending)
	if err != nil {
		return nil, dbus.ToDBusError(err)
	}
	ps, err := o.s.backend.PendingGroups(c.ctx)
	if err != nil {
		return nil, c.end(err)
	}
	out := make(fieldMaps, 0, len(ps))
	for _, p := range ps {
		if c.caller.Admin || p.Connection.UID == int64(c.caller.UID) {
			out = append(out, dbus.Variants(p.Fields()))
		}
	}
	return out, c.end(nil)
}

func (o *object) Answer(sender godbus.Sender, id uint64, action, lifetime, scope string, raw fieldMap) *godbus.Error {
	c, err := o.s.begin(sender, dbus.MethodAnswer)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	opts, err := dbus.Fields(raw)
	if err != nil {
		return c.end(fmt.Errorf("answer options: %w", err))
	}
	const maxWord = 64
	if len(action) > maxWord || len(lifetime) > maxWord || len(scope) > maxWord {
		return c.end(invalid("answer words longer than %d bytes", maxWord))
	}
	a, err := shared.ParseAnswer(id, action, lifetime, scope, opts)
	if err != nil {
		return c.end(invalid("answer: %v", err))
	}
	p, err := o.s.backend.PendingGroup(c.ctx, id)
	if err != nil {
		return c.end(err)
	}
	if o.s.mayAnswer(c.name, p.Connection.UID) {
		if err := c.requireUser(ActionAnswer, "answering a connection"); err != nil {
			return c.end(err)
		}
	} else if err := c.requireAdmin(fmt.Sprintf("answering a connection of uid %d (not this agent's)", p.Connection.UID)); err != nil {
		return c.end(err)
	}
	if a.System {
		if err := c.requireAdmin("a system rule"); err != nil {
			return c.end(err)
		}
	}
	return c.end(o.s.backend.Answer(c.ctx, c.caller, a))
}

func (o *object) RecentConnections(sender godbus.Sender, raw fieldMap) (fieldMaps, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodRecentConnections)
	if err != nil {
		return nil, dbus.ToDBusError(err)
	}
	ff, err := dbus.Fields(raw)
	if err != nil {
		return nil, c.end(fmt.Errorf("filter: %w", err))
	}
	f, err := shared.LogFilterFromFields(ff)
	if err != nil {
		return nil, c.end(invalid("filter: %v", err))
	}
	if !c.caller.Admin {
		if f.UID != nil && *f.UID != c.caller.UID {
			return nil, c.end(fmt.Errorf("%w: only root sees other users' connections", dbus.ErrNotAuthorized))
		}
		uid := c.caller.UID
		f.UID = &uid
	}
	es, err := o.s.backend.RecentConnections(c.ctx, c.caller, f)
	if err != nil {
		return nil, c.end(err)
	}
	out := make(fieldMaps, 0, len(es))
	size := 8
	for _, e := range es {
		if f.Matches(e) {
			// Newest first: past the reply bound the oldest are left out.
			ef := e.Fields()
			if size += 8 + dbus.WireSize(ef); size > dbus.MaxReplyBytes {
				break
			}
			out = append(out, dbus.Variants(ef))
		}
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
	}
	return out, c.end(nil)
}

// Explain says which rules match a connection and which one decides. A
// caller other than root asks about a connection of its own uid: rules of
// other users never match it, so it learns nothing of theirs.
func (o *object) Explain(sender godbus.Sender, raw fieldMap) (string, fieldMaps, *godbus.Error) {
	c, err := o.s.begin(sender, dbus.MethodExplain)
	if err != nil {
		return "", nil, dbus.ToDBusError(err)
	}
	ff, err := dbus.Fields(raw)
	if err != nil {
		return "", nil, c.end(fmt.Errorf("connection: %w", err))
	}
	conn, err := shared.ConnectionFromFields(ff)
	if err != nil {
		return "", nil, c.end(invalid("connection: %v", err))
	}
	if !c.caller.Admin {
		conn.UID = int64(c.caller.UID)
	}
	ex, err := o.s.backend.Explain(c.ctx, c.caller, conn)
	if err != nil {
		return "", nil, c.end(err)
	}
	out := make(fieldMaps, 0, len(ex.Candidates))
	for _, cand := range ex.Candidates {
		if visibleRule(c.caller, cand.Rule) {
			out = append(out, dbus.Variants(cand.Fields()))
		}
	}
	return ex.Text, out, c.end(nil)
}
