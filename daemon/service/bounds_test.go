package service

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/bus"
	"github.com/tollgate-fw/tollgate/daemon/rulebook"
	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// The per-user rule limit as the D-Bus backend meets it: past the bound,
// AddRule and ImportRules of an unprivileged caller fail with
// InvalidArgument (what the bus sends as
// org.tollgate.Firewall1.Error.InvalidArgument), store nothing, and leave
// other users and admins free. The limit is not a configuration key, so the
// rule book is built here with a bound of 2 instead of 10,000.
func TestRulesPerUserLimitIsInvalidArgumentAndChangesNothing(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "tollgate.db"), LockTimeout: time.Second, MaxLogEntries: 10}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	book, err := rulebook.New(st, func(*rules.Set) {}, log, rulebook.Options{MaxPerUser: 2})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{log: log, book: book, store: st}
	if s.srv, err = bus.New(bus.Options{Backend: s, Log: log, PolkitDisabled: true}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice, bob, root := bus.Caller{UID: 1000}, bus.Caller{UID: 1001}, bus.Caller{UID: 0}
	rule := func(port uint16) shared.Rule {
		return shared.Rule{Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
			Match: shared.Match{Exe: "/usr/bin/curl", Port: shared.PortRange{Lo: port, Hi: port}}}
	}
	for port := uint16(1); port <= 2; port++ {
		if _, err := s.AddRule(ctx, alice, rule(port)); err != nil {
			t.Fatalf("rule %d within the bound: %v", port, err)
		}
	}
	stored := func() int {
		rs, bad, err := st.Rules()
		if err != nil || len(bad) != 0 {
			t.Fatalf("read stored rules: %v %v", bad, err)
		}
		return len(rs)
	}
	before := stored()
	_, err = s.AddRule(ctx, alice, rule(3))
	if !errors.Is(err, dbus.ErrInvalidArgument) || !errors.Is(err, rulebook.ErrLimit) {
		t.Errorf("AddRule past the bound: %v, want InvalidArgument (ErrLimit)", err)
	}
	n, err := s.ImportRules(ctx, alice, "[[rule]]\naction = \"deny\"\nexe = \"/usr/bin/nc\"\n")
	if !errors.Is(err, dbus.ErrInvalidArgument) || n != 0 {
		t.Errorf("ImportRules past the bound: %d %v, want 0 and InvalidArgument", n, err)
	}
	if got := stored(); got != before {
		t.Errorf("%d rules stored after refused calls, want %d", got, before)
	}
	if rs, _, _ := s.RulesPage(ctx, alice, "", 100); len(rs) != 2 {
		t.Errorf("alice sees %d rules, want her 2", len(rs))
	}
	if _, err := s.AddRule(ctx, bob, rule(1)); err != nil {
		t.Errorf("another user's rule: %v", err)
	}
	if _, err := s.AddRule(ctx, root, rule(4)); err != nil {
		t.Errorf("root's rule: %v", err)
	}
}
