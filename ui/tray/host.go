package tray

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	godbus "github.com/godbus/dbus/v5"
)

// statusNotifierWatcher is the session-bus name of a StatusNotifierItem
// host (the tray of KDE, GNOME with the AppIndicator extension, xfce, ...).
const statusNotifierWatcher = "org.kde.StatusNotifierWatcher"

// sessionBusAddress is the session bus's address when one is known,
// without ever starting one (godbus would autolaunch a bus).
func sessionBusAddress() string {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
		return a
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		p := filepath.Join(dir, "bus")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return "unix:path=" + p
		}
	}
	return ""
}

// TrayHostPresent reports whether a tray host (StatusNotifierWatcher) is on
// the session bus now. Without a session bus there is none.
func TrayHostPresent(ctx context.Context) bool {
	addr := sessionBusAddress()
	if addr == "" || strings.Contains(addr, "autolaunch:") {
		return false
	}
	found := make(chan bool, 1)
	go func() {
		conn, err := godbus.Dial(addr)
		if err != nil {
			found <- false
			return
		}
		defer conn.Close()
		if conn.Auth(nil) != nil || conn.Hello() != nil {
			found <- false
			return
		}
		var has bool
		err = conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, statusNotifierWatcher).Store(&has)
		found <- err == nil && has
	}()
	select {
	case ok := <-found:
		return ok
	case <-ctx.Done():
		return false
	}
}
