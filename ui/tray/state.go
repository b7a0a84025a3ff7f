package tray

import (
	"fmt"

	"github.com/tollgate-fw/tollgate/shared"
)

// Icon names the look of the status icon. The Fyne side maps it to the
// embedded picture (assets.StatusIcon).
type Icon string

// The icons, one per state the issue asks the icon to tell apart.
const (
	IconEnforcing   Icon = "enforcing"
	IconMonitor     Icon = "monitor"
	IconDisabled    Icon = "disabled"
	IconUnreachable Icon = "unreachable"
	IconPending     Icon = "pending"
)

// The daemon's modes, as SetMode takes them and Status.Mode reports them.
const (
	ModeEnforcing = "enforcing"
	ModeMonitor   = "monitor"
	ModeDisabled  = "disabled"
)

// Modes are the modes the Mode submenu offers, in menu order.
var Modes = []string{ModeEnforcing, ModeMonitor, ModeDisabled}

// State is what the tray knows about the daemon: the view-model of the
// icon, its tooltip and the menu. It is plain data; the zero State is
// "unreachable, nothing waiting".
type State struct {
	Reachable bool          // the daemon answered since the last (re)connection
	Status    shared.Status // its last answer to GetStatus (valid when Reachable)
	Waiting   int           // pending groups waiting in this tray's prompt
	Problem   string        // why the daemon is unreachable ("" when unknown)
}

// Icon is the icon for s: unreachable first (nothing else is known), then
// prompts waiting (they need the user), then the mode.
func (s State) Icon() Icon {
	switch {
	case !s.Reachable:
		return IconUnreachable
	case s.Waiting > 0:
		return IconPending
	}
	switch s.Status.Mode {
	case ModeEnforcing:
		return IconEnforcing
	case ModeMonitor:
		return IconMonitor
	case ModeDisabled:
		return IconDisabled
	}
	// A mode this tray does not know: say nothing reassuring.
	return IconUnreachable
}

// StatusLine is the first, inert line of the menu (and the tooltip).
func (s State) StatusLine() string {
	if !s.Reachable {
		return "Tollgate: daemon unreachable"
	}
	line := "Tollgate: " + modeText(s.Status.Mode)
	if s.Waiting > 0 {
		line += fmt.Sprintf(" — %d waiting", s.Waiting)
	}
	return line
}

// Tooltip is a longer description: the status line plus what the mode
// means or why the daemon cannot be reached (Explanation).
func (s State) Tooltip() string {
	if e := s.Explanation(); e != "" {
		return s.StatusLine() + ": " + e
	}
	return s.StatusLine()
}

// Explanation is what the status line means: the second line of the
// status window, the tooltip's tail.
func (s State) Explanation() string {
	if !s.Reachable {
		why := ""
		if s.Problem != "" {
			why = s.Problem + "; "
		}
		return why + "new connections cannot be asked about until it is back"
	}
	switch s.Status.Mode {
	case ModeEnforcing:
		return "rules decide, new connections are asked about"
	case ModeMonitor:
		return "nothing is blocked, verdicts are only logged"
	case ModeDisabled:
		return "the firewall lets everything through"
	}
	return ""
}

func modeText(mode string) string {
	switch mode {
	case ModeEnforcing, ModeMonitor, ModeDisabled:
		return mode
	case "":
		return "mode unknown"
	}
	return fmt.Sprintf("unknown mode %q", mode)
}

// PendingLabel is the label of the menu item that brings the prompt to the
// front.
func (s State) PendingLabel() string { return fmt.Sprintf("Pending (%d)", s.Waiting) }

// PendingEnabled says whether that item does anything.
func (s State) PendingEnabled() bool { return s.Waiting > 0 }

// ModeItem is one entry of the Mode submenu.
type ModeItem struct {
	Mode    string // what SetMode is called with
	Label   string
	Checked bool // the daemon's current mode
	Enabled bool // choosable: the daemon is reachable and it is not the current mode
}

// ModeItems are the entries of the Mode submenu, in Modes order.
func (s State) ModeItems() []ModeItem {
	out := make([]ModeItem, 0, len(Modes))
	for _, m := range Modes {
		cur := s.Reachable && s.Status.Mode == m
		out = append(out, ModeItem{Mode: m, Label: modeLabel(m), Checked: cur, Enabled: s.Reachable && !cur})
	}
	return out
}

func modeLabel(m string) string {
	switch m {
	case ModeEnforcing:
		return "Enforcing"
	case ModeMonitor:
		return "Monitor (log only)"
	case ModeDisabled:
		return "Disabled"
	}
	return m
}
