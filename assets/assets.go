// Package assets holds Tollgate's icons and desktop files, embedded: the SVG
// sources in icons/ and their PNG renders (made by render.sh, committed), the
// application's .desktop file and its XDG autostart file.
//
// It owns how Tollgate looks from the outside (tray status icons, app icon)
// and how desktops start it. It must stay free of logic and of any UI toolkit:
// it hands out bytes, the tray decides what to show.
package assets

import _ "embed" // the icons and desktop files

// Status is the state a tray status icon shows.
type Status string

const (
	StatusEnforcing   Status = "enforcing"   // rules are enforced: a check mark on a green shield
	StatusMonitor     Status = "monitor"     // connections are only logged: an eye on an amber shield
	StatusDisabled    Status = "disabled"    // the firewall is off: a slash on a grey shield
	StatusUnreachable Status = "unreachable" // the daemon cannot be reached: "!" on a red shield
	StatusPending     Status = "pending"     // prompts are waiting: "?" on a blue shield with a badge dot
)

// Statuses lists every status that has an icon.
func Statuses() []Status {
	return []Status{StatusEnforcing, StatusMonitor, StatusDisabled, StatusUnreachable, StatusPending}
}

// Sizes of the PNG renders, in pixels (square).
const (
	StatusIconSize   = 64
	AppIconSize      = 256
	AppIconSmallSize = 48
)

// PendingBadge is where the badge circle of the pending icon lies in its
// 64×64 render (status-pending.svg: circle cx 49.5 cy 14.5 r 12.5, a white
// stroke of 3.5 half inside): the tray writes the number waiting inside
// InnerRadius, in BadgeText's colour on the badge's amber.
var PendingBadge = struct {
	CenterX, CenterY, InnerRadius float64
}{49.5, 14.5, 10.75}

// BadgeText is the colour of the number on the pending badge (dark on
// amber #f59e0b) as 0xRRGGBB.
const BadgeText = 0x1c1917

//go:embed icons/status-enforcing.png
var statusEnforcingPNG []byte

//go:embed icons/status-enforcing.svg
var statusEnforcingSVG []byte

//go:embed icons/status-monitor.png
var statusMonitorPNG []byte

//go:embed icons/status-monitor.svg
var statusMonitorSVG []byte

//go:embed icons/status-disabled.png
var statusDisabledPNG []byte

//go:embed icons/status-disabled.svg
var statusDisabledSVG []byte

//go:embed icons/status-unreachable.png
var statusUnreachablePNG []byte

//go:embed icons/status-unreachable.svg
var statusUnreachableSVG []byte

//go:embed icons/status-pending.png
var statusPendingPNG []byte

//go:embed icons/status-pending.svg
var statusPendingSVG []byte

//go:embed icons/tollgate-256.png
var appPNG []byte

//go:embed icons/tollgate-48.png
var appPNG48 []byte

//go:embed icons/tollgate.svg
var appSVG []byte

//go:embed tollgate-tray.desktop
var desktopFile []byte

//go:embed tollgate-tray-autostart.desktop
var autostartFile []byte

// Every file is embedded by name: a missing one fails the build.
var (
	statusPNG = map[Status][]byte{
		StatusEnforcing:   statusEnforcingPNG,
		StatusMonitor:     statusMonitorPNG,
		StatusDisabled:    statusDisabledPNG,
		StatusUnreachable: statusUnreachablePNG,
		StatusPending:     statusPendingPNG,
	}
	statusSVG = map[Status][]byte{
		StatusEnforcing:   statusEnforcingSVG,
		StatusMonitor:     statusMonitorSVG,
		StatusDisabled:    statusDisabledSVG,
		StatusUnreachable: statusUnreachableSVG,
		StatusPending:     statusPendingSVG,
	}
)

// StatusIcon returns the 64×64 PNG of a tray status, or nil for a status that
// is not one of Statuses(). The slice is shared: do not modify it.
func StatusIcon(s Status) []byte { return statusPNG[s] }

// StatusIconSVG returns the SVG source of a tray status, or nil.
func StatusIconSVG(s Status) []byte { return statusSVG[s] }

// AppIcon returns the 256×256 PNG of the application icon.
func AppIcon() []byte { return appPNG }

// AppIconSmall returns the 48×48 PNG of the application icon.
func AppIconSmall() []byte { return appPNG48 }

// AppIconSVG returns the SVG source of the application icon.
func AppIconSVG() []byte { return appSVG }

// DesktopFile returns assets/tollgate-tray.desktop, the application's
// desktop entry (installed as /usr/share/applications/tollgate-tray.desktop).
func DesktopFile() []byte { return desktopFile }

// AutostartFile returns assets/tollgate-tray-autostart.desktop, the XDG
// autostart entry (installed as /etc/xdg/autostart/tollgate-tray.desktop).
func AutostartFile() []byte { return autostartFile }
