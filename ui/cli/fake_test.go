package cli

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/internal/sigtest"
	"github.com/tollgate-fw/tollgate/shared"
)

// fakeDaemon is a Client that keeps state like the daemon would: rules,
// pending groups, a log, agents. Tests check the state after a command,
// not the calls made.
type fakeDaemon struct {
	mu            sync.Mutex
	status        shared.Status
	rules         []shared.Rule
	nextID        int
	pending       []shared.Pending
	log           []shared.LogEntry // newest first
	answers       []shared.Answer
	agent         bool
	registrations int
	explained     []shared.Connection
	imported      []string
	export        string
	logCalls      int

	// deny makes every mutating call fail with this error.
	deny error
	// fail makes every call fail with this error.
	fail error

	sigs   chan dbus.Signal
	closed bool
}

func newFake() *fakeDaemon {
	return &fakeDaemon{
		status: shared.Status{Mode: "enforcing", Version: "0.1.0", DefaultAction: shared.ActionDeny,
			QueueDropped: 2, Decided: 10, Allowed: 7, Denied: 3},
		sigs: make(chan dbus.Signal, 16),
	}
}

func (f *fakeDaemon) check(mutating bool) error {
	if f.fail != nil {
		return f.fail
	}
	if mutating && f.deny != nil {
		return f.deny
	}
	return nil
}

func (f *fakeDaemon) GetStatus(ctx context.Context) (shared.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(false); err != nil {
		return shared.Status{}, err
	}
	s := f.status
	s.Rules, s.Pending = len(f.rules), len(f.pending)
	return s, nil
}

func (f *fakeDaemon) SetMode(ctx context.Context, mode string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(true); err != nil {
		return err
	}
	f.status.Mode = mode
	return nil
}

func (f *fakeDaemon) ListRules(ctx context.Context) ([]shared.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(false); err != nil {
		return nil, err
	}
	return slices.Clone(f.rules), nil
}

func (f *fakeDaemon) GetRule(ctx context.Context, id string) (shared.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(false); err != nil {
		return shared.Rule{}, err
	}
	if i := f.ruleIndex(id); i >= 0 {
		return f.rules[i], nil
	}
	return shared.Rule{}, dbusErr(dbus.ErrorNotFound, "no rule "+id)
}

// AddRuleFields decodes and validates as the daemon does.
func (f *fakeDaemon) AddRuleFields(ctx context.Context, fields map[string]any) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(true); err != nil {
		return "", err
	}
	r, err := shared.RuleFromFields(fields)
	if err == nil {
		r.Normalize()
		err = r.Validate()
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", dbus.ErrInvalidArgument, err)
	}
	f.nextID++
	r.ID = "r" + strconv.Itoa(f.nextID)
	f.rules = append(f.rules, r)
	return r.ID, nil
}

func (f *fakeDaemon) ruleIndex(id string) int {
	return slices.IndexFunc(f.rules, func(r shared.Rule) bool { return r.ID == id })
}

func (f *fakeDaemon) UpdateRule(ctx context.Context, id string, r shared.Rule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(true); err != nil {
		return err
	}
	i := f.ruleIndex(id)
	if i < 0 {
		return fmt.Errorf("rule %s: %w", id, dbus.ErrNotFound)
	}
	r.ID = id
	r.Hits = f.rules[i].Hits
	f.rules[i] = r
	return nil
}

func (f *fakeDaemon) DeleteRule(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(true); err != nil {
		return err
	}
	i := f.ruleIndex(id)
	if i < 0 {
		return dbusErr(dbus.ErrorNotFound, "no rule "+id)
	}
	f.rules = slices.Delete(f.rules, i, i+1)
	return nil
}

func (f *fakeDaemon) ExportRules(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(false); err != nil {
		return "", err
	}
	return f.export, nil
}

func (f *fakeDaemon) ImportRules(ctx context.Context, toml string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(true); err != nil {
		return 0, err
	}
	if slices.Contains(f.imported, toml) {
		return 0, nil
	}
	f.imported = append(f.imported, toml)
	return bytes.Count([]byte(toml), []byte("[[rule]]")), nil
}

func (f *fakeDaemon) RegisterAgent(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(false); err != nil {
		return err
	}
	f.agent = true
	f.registrations++
	return nil
}

func (f *fakeDaemon) UnregisterAgent(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.agent = false
	return nil
}

func (f *fakeDaemon) registered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.registrations
}

func (f *fakeDaemon) isAgent() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agent
}

func (f *fakeDaemon) ListPending(ctx context.Context) ([]shared.Pending, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(false); err != nil {
		return nil, err
	}
	return slices.Clone(f.pending), nil
}

func (f *fakeDaemon) Answer(ctx context.Context, a shared.Answer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(true); err != nil {
		return err
	}
	i := slices.IndexFunc(f.pending, func(p shared.Pending) bool { return p.ID == a.PendingID })
	if i < 0 {
		return fmt.Errorf("pending %d: %w", a.PendingID, dbus.ErrNotFound)
	}
	f.pending = slices.Delete(f.pending, i, i+1)
	f.answers = append(f.answers, a)
	return nil
}

func (f *fakeDaemon) answered() []shared.Answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.answers)
}

func (f *fakeDaemon) RecentConnections(ctx context.Context, lf shared.LogFilter) ([]shared.LogEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logCalls++
	if err := f.check(false); err != nil {
		return nil, err
	}
	var out []shared.LogEntry
	for _, e := range f.log {
		if lf.Matches(e) && (lf.Limit == 0 || len(out) < lf.Limit) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeDaemon) addLog(e shared.LogEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append([]shared.LogEntry{e}, f.log...)
}

func (f *fakeDaemon) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logCalls
}

// Explain matches the fake's rules with shared's matcher rules: a rule
// matches when its exe, host and port (as far as given) fit; candidates
// come most specific first.
func (f *fakeDaemon) Explain(ctx context.Context, c shared.Connection) (shared.Explanation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.explained = append(f.explained, c)
	if err := f.check(false); err != nil {
		return shared.Explanation{}, err
	}
	var ex shared.Explanation
	for _, r := range f.rules {
		m := r.Match
		if (m.Exe != "" && !shared.GlobMatch(m.Exe, c.Exe)) || (!m.Port.IsAny() && !m.Port.Contains(c.RemotePort)) {
			continue
		}
		host := ""
		if m.Host != "" {
			for _, h := range c.Hosts {
				if shared.HostMatches(m.Host, h) {
					host = h
				}
			}
			if host == "" {
				continue
			}
		}
		ex.Candidates = append(ex.Candidates, shared.Candidate{Rule: r, Specificity: m.Specificity(), HostMatched: host})
	}
	slices.SortStableFunc(ex.Candidates, func(a, b shared.Candidate) int { return b.Specificity - a.Specificity })
	for i := 1; i < len(ex.Candidates); i++ {
		ex.Candidates[i].LostBy = "less specific"
	}
	if len(ex.Candidates) == 0 {
		ex.Text = "no rule matches: the default action (deny) applies"
	} else {
		ex.Text = "rule " + ex.Candidates[0].Rule.ID + " decides: most specific"
	}
	return ex, nil
}

func (f *fakeDaemon) Signals(ctx context.Context) (<-chan dbus.Signal, error) {
	if err := f.check(false); err != nil {
		return nil, err
	}
	return sigtest.Forward(ctx, f.sigs), nil
}

// offer makes a pending group and signals it, as the daemon does.
func (f *fakeDaemon) offer(p shared.Pending) {
	f.mu.Lock()
	f.pending = append(f.pending, p)
	f.mu.Unlock()
	f.sigs <- dbus.Signal{Name: dbus.SignalConnectionPending, Pending: p}
}

// resolve ends a pending group elsewhere (another agent, the timeout).
func (f *fakeDaemon) resolve(id uint64, a shared.Action) {
	f.mu.Lock()
	f.pending = slices.DeleteFunc(f.pending, func(p shared.Pending) bool { return p.ID == id })
	f.mu.Unlock()
	f.sigs <- dbus.Signal{Name: dbus.SignalPendingResolved, ID: id, Action: a}
}

// setDeny sets f.deny under the lock (for a fake served on a bus).
func (f *fakeDaemon) setDeny(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deny = err
}

func (f *fakeDaemon) setPending(ps []shared.Pending) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = ps
}

func (f *fakeDaemon) rulesNow() []shared.Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.rules)
}

func (f *fakeDaemon) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// waitFor waits for cond (proctest.WaitFor) with this package's deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, 10*time.Second, what, cond)
}
