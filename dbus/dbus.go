// Package dbus is Tollgate's D-Bus interface: the introspection XML (the
// truth), the bus, object, interface, signal and error names, the a{sv}
// conversions with their bounds, and a typed client for the CLI and the tray.
//
// It owns what the daemon and its clients must agree on over the bus. It
// must not import the daemon (daemon/...) or any UI toolkit, and holds no
// policy: who may do what is decided by the daemon (daemon/bus).
package dbus

import (
	_ "embed"
	"errors"

	godbus "github.com/godbus/dbus/v5"
)

// IntrospectionXML is org.tollgate.Firewall1.xml, served as the object's
// introspection data.
//
//go:embed org.tollgate.Firewall1.xml
var IntrospectionXML string

// Names on the bus.
const (
	BusName    = "org.tollgate.Firewall1"
	ObjectPath = godbus.ObjectPath("/org/tollgate/Firewall1")
	Interface  = "org.tollgate.Firewall1"
)

// Member names (methods and signals) of Interface.
const (
	MethodGetStatus         = "GetStatus"
	MethodSetMode           = "SetMode"
	MethodListRules         = "ListRules"
	MethodListRulesPage     = "ListRulesPage"
	MethodGetRule           = "GetRule"
	MethodAddRule           = "AddRule"
	MethodUpdateRule        = "UpdateRule"
	MethodDeleteRule        = "DeleteRule"
	MethodExportRules       = "ExportRules"
	MethodImportRules       = "ImportRules"
	MethodRegisterAgent     = "RegisterAgent"
	MethodUnregisterAgent   = "UnregisterAgent"
	MethodListPending       = "ListPending"
	MethodAnswer            = "Answer"
	MethodRecentConnections = "RecentConnections"
	MethodExplain           = "Explain"

	SignalConnectionPending = "ConnectionPending"
	SignalPendingResolved   = "PendingResolved"
	SignalRulesChanged      = "RulesChanged"
	SignalStatusChanged     = "StatusChanged"
)

// D-Bus error names.
const (
	ErrorInvalidArgument = Interface + ".Error.InvalidArgument"
	ErrorNotAuthorized   = Interface + ".Error.NotAuthorized"
	ErrorNotFound        = Interface + ".Error.NotFound"
	ErrorBusy            = Interface + ".Error.Busy"
	// ErrorFailed is the standard name used for any other failure.
	ErrorFailed = "org.freedesktop.DBus.Error.Failed"
)

// Sentinel errors. The daemon's backend returns (wraps) them; the server
// sends them as the named D-Bus errors; the client turns the names back, so
// errors.Is(err, ErrNotAuthorized) holds on both sides.
var (
	ErrInvalidArgument = errors.New("invalid argument")
	ErrNotAuthorized   = errors.New("not authorized")
	ErrNotFound        = errors.New("not found")
	ErrBusy            = errors.New("busy")
)

var errorNames = []struct {
	name string
	err  error
}{
	{ErrorInvalidArgument, ErrInvalidArgument},
	{ErrorNotAuthorized, ErrNotAuthorized},
	{ErrorNotFound, ErrNotFound},
	{ErrorBusy, ErrBusy},
}

// Error is an error a D-Bus peer replied with. Unwrap gives the matching
// sentinel (ErrNotAuthorized...) for the Tollgate error names.
type Error struct {
	Name    string // D-Bus error name
	Message string // human message
	kind    error
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Name
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.kind }

// ToDBusError turns an error into the D-Bus error to send: a Tollgate
// sentinel anywhere in its chain gives its name, anything else
// org.freedesktop.DBus.Error.Failed. The message is err's text.
func ToDBusError(err error) *godbus.Error {
	if err == nil {
		return nil
	}
	name := ErrorFailed
	for _, n := range errorNames {
		if errors.Is(err, n.err) {
			name = n.name
			break
		}
	}
	return godbus.NewError(name, []any{err.Error()})
}

// FromDBusError turns an error from a godbus call into *Error when it is a
// D-Bus error reply (keeping other errors as they are).
func FromDBusError(err error) error {
	var de godbus.Error
	var dp *godbus.Error
	switch {
	case errors.As(err, &dp) && dp != nil:
		de = *dp
	case errors.As(err, &de):
	default:
		return err
	}
	e := &Error{Name: de.Name}
	if len(de.Body) > 0 {
		if s, ok := de.Body[0].(string); ok {
			e.Message = s
		}
	}
	for _, n := range errorNames {
		if n.name == de.Name {
			e.kind = n.err
		}
	}
	return e
}
