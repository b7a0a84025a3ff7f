// Package deptest holds only tests: they keep the walls between Tollgate's
// parts standing, from `go list -deps`. ui/ never imports the daemon;
// the daemon and the tollgate CLI never depend on Fyne and build without
// cgo; the UI's view-models (and ui/agent, ui/desktop) never depend on
// Fyne; shared imports only the standard library; dbus imports neither the
// daemon nor the UI.
//
// It owns no code used by any binary and must not be imported.
package deptest
