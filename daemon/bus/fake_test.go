package bus

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// fakeBackend keeps rules, pending groups, log and agents as state, so
// tests check what the calls did.
type fakeBackend struct {
	mu       sync.Mutex
	next     int
	mode     string
	rules    map[string]shared.Rule
	pending  map[uint64]shared.Pending
	log      []shared.LogEntry
	answers  []shared.Answer
	imported int
	// exportPad lengthens what ExportRules returns.
	exportPad string
	agents    map[string]uint32
	gone      []string
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{mode: "enforcing", rules: map[string]shared.Rule{}, pending: map[uint64]shared.Pending{}, agents: map[string]uint32{}}
}

func (b *fakeBackend) Status(ctx context.Context, c Caller) (shared.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return shared.Status{Mode: b.mode, Version: "test", DefaultAction: shared.ActionDeny, Rules: len(b.rules),
		Pending: len(b.pending), Agents: len(b.agents), Decided: 3, Allowed: 2, Denied: 1}, nil
}

func (b *fakeBackend) SetMode(ctx context.Context, c Caller, mode string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mode = mode
	return nil
}

// RulesPage leaves visibility to the bus layer, so its filter is what
// tests see.
func (b *fakeBackend) RulesPage(ctx context.Context, c Caller, after string, limit int) ([]shared.Rule, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]shared.Rule, 0, len(b.rules))
	for _, r := range b.rules {
		if r.ID > after {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(x, y shared.Rule) int { return cmpStr(x.ID, y.ID) })
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (b *fakeBackend) Rule(ctx context.Context, id string) (shared.Rule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.rules[id]
	if !ok {
		return shared.Rule{}, fmt.Errorf("%w: no rule %q", dbus.ErrNotFound, id)
	}
	return r, nil
}

func (b *fakeBackend) put(r shared.Rule) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.ID == "" {
		b.next++
		r.ID = "r" + strconv.Itoa(b.next)
	}
	b.rules[r.ID] = r
	return r.ID
}

func (b *fakeBackend) AddRule(ctx context.Context, c Caller, r shared.Rule) (string, error) {
	r.ID = ""
	return b.put(r), nil
}

func (b *fakeBackend) UpdateRule(ctx context.Context, c Caller, id string, r shared.Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.rules[id]; !ok {
		return fmt.Errorf("%w: no rule %q", dbus.ErrNotFound, id)
	}
	r.ID = id
	b.rules[id] = r
	return nil
}

func (b *fakeBackend) DeleteRule(ctx context.Context, c Caller, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.rules[id]; !ok {
		return fmt.Errorf("%w: no rule %q", dbus.ErrNotFound, id)
	}
	delete(b.rules, id)
	return nil
}

func (b *fakeBackend) ExportRules(ctx context.Context, c Caller) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("# rules of uid %d\n", c.UID) + b.exportPad, nil
}

func (b *fakeBackend) ImportRules(ctx context.Context, c Caller, toml string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.imported++
	return 1, nil
}

func (b *fakeBackend) AgentRegistered(c Caller) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.agents[c.Name] = c.UID
}

func (b *fakeBackend) AgentGone(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.agents, name)
	b.gone = append(b.gone, name)
}

func (b *fakeBackend) agentCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.agents)
}

func (b *fakeBackend) PendingGroups(ctx context.Context) ([]shared.Pending, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]shared.Pending, 0, len(b.pending))
	for _, p := range b.pending {
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y shared.Pending) int { return int(x.ID) - int(y.ID) })
	return out, nil
}

func (b *fakeBackend) PendingGroup(ctx context.Context, id uint64) (shared.Pending, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pending[id]
	if !ok {
		return shared.Pending{}, fmt.Errorf("%w: no pending connection %d", dbus.ErrNotFound, id)
	}
	return p, nil
}

func (b *fakeBackend) Answer(ctx context.Context, c Caller, a shared.Answer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.answers = append(b.answers, a)
	return nil
}

func (b *fakeBackend) RecentConnections(ctx context.Context, c Caller, f shared.LogFilter) ([]shared.LogEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Deliberately unfiltered: the bus layer must filter by uid itself.
	return slices.Clone(b.log), nil
}

// Explain answers with every rule whose owner could apply to conn, with
// the uid it was asked about in the text: the bus layer must have forced
// it to the caller's for non-admins, and must hide other users' rules.
func (b *fakeBackend) Explain(ctx context.Context, c Caller, conn shared.Connection) (shared.Explanation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ex := shared.Explanation{Text: fmt.Sprintf("uid %d", conn.UID)}
	ids := slices.Sorted(maps.Keys(b.rules))
	for _, id := range ids {
		ex.Candidates = append(ex.Candidates, shared.Candidate{Rule: b.rules[id]})
	}
	return ex, nil
}

func (b *fakeBackend) snapshot() (map[string]shared.Rule, string, int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rs := make(map[string]shared.Rule, len(b.rules))
	for k, v := range b.rules {
		rs[k] = v
	}
	return rs, b.mode, len(b.answers), b.imported
}

// fakePeer answers who callers are and what polkit allows from tables.
type fakePeer struct {
	uids   map[string]uint32          // unique name → uid
	polkit map[uint32]map[string]bool // uid → action → allowed; nil = polkit absent
	asked  []string
}

func (p *fakePeer) UnixUser(ctx context.Context, name string) (uint32, error) {
	uid, ok := p.uids[name]
	if !ok {
		return 0, fmt.Errorf("no connection %s", name)
	}
	return uid, nil
}

func (p *fakePeer) Authorized(ctx context.Context, name, action string, interactive bool) (bool, bool, error) {
	p.asked = append(p.asked, action)
	if p.polkit == nil {
		return false, false, nil
	}
	return p.polkit[p.uids[name]][action], true, nil
}

func (p *fakePeer) HasOwner(ctx context.Context, name string) (bool, error) {
	_, ok := p.uids[name]
	return ok, nil
}
