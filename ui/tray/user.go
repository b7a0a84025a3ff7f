package tray

import (
	"errors"
	"fmt"

	"github.com/tollgate-fw/tollgate/dbus"
)

// ErrRoot is returned by CheckUser (and New) for uid 0.
var ErrRoot = errors.New("tollgate-tray must not run as root: start it as the desktop user " +
	"(it registers as that user's agent; root's own connections are decided by rules, or answered with `sudo tollgate prompt`)")

// CheckUser refuses root: a GUI running as root is a risk, and the prompts
// of a root agent would be for root's connections, not the user's.
func CheckUser(uid, euid int) error {
	if uid == 0 || euid == 0 {
		return ErrRoot
	}
	return nil
}

// ModeError words a failed SetMode for the user.
func ModeError(mode string, err error) string {
	switch {
	case errors.Is(err, dbus.ErrNotAuthorized):
		return fmt.Sprintf("Tollgate could not switch to %s: not authorized. Changing the mode needs an administrator (polkit asks for the password when an agent is running).", mode)
	case errors.Is(err, ErrNoBus):
		return fmt.Sprintf("Tollgate could not switch to %s: not connected to the system bus.", mode)
	case errors.Is(err, dbus.ErrInvalidArgument):
		return fmt.Sprintf("Tollgate could not switch to %s: the daemon does not know this mode (%v).", mode, err)
	}
	if p := problem(err); p == "tollgated is not running" || p == "tollgated does not answer" {
		return fmt.Sprintf("Tollgate could not switch to %s: %s.", mode, p)
	}
	return fmt.Sprintf("Tollgate could not switch to %s: %v", mode, err)
}
