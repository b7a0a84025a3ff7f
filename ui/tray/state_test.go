package tray

import (
	"strings"
	"testing"

	"github.com/tollgate-fw/tollgate/shared"
)

func TestStateIconAndText(t *testing.T) {
	st := func(mode string) shared.Status { return shared.Status{Mode: mode} }
	tests := []struct {
		name     string
		s        State
		icon     Icon
		line     string
		pending  string
		pendOK   bool
		checked  string // mode checked in the submenu, "" none
		choosing bool   // any mode choosable
	}{
		{"zero is unreachable", State{}, IconUnreachable, "Tollgate: daemon unreachable", "Pending (0)", false, "", false},
		{"unreachable wins over waiting", State{Waiting: 2, Status: st("enforcing")}, IconUnreachable, "Tollgate: daemon unreachable", "Pending (2)", true, "", false},
		{"enforcing", State{Reachable: true, Status: st("enforcing")}, IconEnforcing, "Tollgate: enforcing", "Pending (0)", false, "enforcing", true},
		{"monitor", State{Reachable: true, Status: st("monitor")}, IconMonitor, "Tollgate: monitor", "Pending (0)", false, "monitor", true},
		{"disabled", State{Reachable: true, Status: st("disabled")}, IconDisabled, "Tollgate: disabled", "Pending (0)", false, "disabled", true},
		{"waiting wins over mode", State{Reachable: true, Status: st("monitor"), Waiting: 3}, IconPending, "Tollgate: monitor — 3 waiting", "Pending (3)", true, "monitor", true},
		{"unknown mode", State{Reachable: true, Status: st("paranoid")}, IconUnreachable, `Tollgate: unknown mode "paranoid"`, "Pending (0)", false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Icon(); got != tt.icon {
				t.Errorf("Icon = %q, want %q", got, tt.icon)
			}
			if got := tt.s.StatusLine(); got != tt.line {
				t.Errorf("StatusLine = %q, want %q", got, tt.line)
			}
			if got := tt.s.PendingLabel(); got != tt.pending {
				t.Errorf("PendingLabel = %q, want %q", got, tt.pending)
			}
			if got := tt.s.PendingEnabled(); got != tt.pendOK {
				t.Errorf("PendingEnabled = %v, want %v", got, tt.pendOK)
			}
			items := tt.s.ModeItems()
			if len(items) != len(Modes) {
				t.Fatalf("%d mode items, want %d", len(items), len(Modes))
			}
			anyEnabled := false
			for i, it := range items {
				if it.Mode != Modes[i] || it.Label == "" {
					t.Errorf("item %d = %+v", i, it)
				}
				if it.Checked != (it.Mode == tt.checked) {
					t.Errorf("item %s checked = %v, want %v", it.Mode, it.Checked, it.Mode == tt.checked)
				}
				if it.Checked && it.Enabled {
					t.Errorf("item %s: the current mode is choosable", it.Mode)
				}
				anyEnabled = anyEnabled || it.Enabled
			}
			if anyEnabled != tt.choosing {
				t.Errorf("some mode choosable = %v, want %v", anyEnabled, tt.choosing)
			}
			if tt.s.Tooltip() == "" {
				t.Error("empty tooltip")
			}
		})
	}
}

func TestStateTooltipSaysWhy(t *testing.T) {
	s := State{Problem: "tollgated is not running"}
	if got := s.Tooltip(); got != "Tollgate: daemon unreachable: tollgated is not running; new connections cannot be asked about until it is back" {
		t.Errorf("Tooltip = %q", got)
	}
}

func TestExplanationDoesNotRepeatStatusLine(t *testing.T) {
	for _, s := range []State{{}, {Problem: "no connection to the system bus"},
		{Reachable: true, Status: shared.Status{Mode: ModeMonitor}}, {Reachable: true, Waiting: 2, Status: shared.Status{Mode: ModeEnforcing}}} {
		e := s.Explanation()
		if e == "" || strings.Contains(e, "Tollgate:") || s.Tooltip() != s.StatusLine()+": "+e {
			t.Errorf("%+v: explanation %q, tooltip %q", s, e, s.Tooltip())
		}
	}
}
