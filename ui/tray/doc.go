// Package tray is the tray shell of tollgate-tray: it keeps the connection
// to the system bus (reconnecting, Bus), follows the daemon's status and
// the connections it blocked while nobody could be asked (Watcher,
// Blocked), shows the status icon and its menu (status line, Pending (N),
// Rules…, Connections…, Mode ▸, Quit) or, without a tray host, a small
// status window with the same entries, and wires the prompt
// (ui/tray/prompt), the rules and connections windows (ui/tray/rules,
// ui/tray/connections) and the application index (ui/desktop) together.
//
// The view-models (State, Blocked, ModeError) are plain Go; the Fyne parts
// touch widgets only on Fyne's goroutine (fyne.Do). The tray speaks to the
// daemon only through package dbus and the types of package shared; it must
// not import the daemon, and it must never run as root (CheckUser).
package tray
