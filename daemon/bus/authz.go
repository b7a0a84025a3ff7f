package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"

	godbus "github.com/godbus/dbus/v5"
)

// ActionManage is the polkit action for system rules, mode changes and
// imports.
const ActionManage = "org.tollgate.manage"

// User actions (yes for active local users in the packaged policy): answering
// one's own connections, making and changing one's own rules.
const (
	ActionAnswer   = "org.tollgate.answer"
	ActionOwnRules = "org.tollgate.own-rules"
)

const (
	polkitName  = "org.freedesktop.PolicyKit1"
	polkitPath  = godbus.ObjectPath("/org/freedesktop/PolicyKit1/Authority")
	polkitCheck = "org.freedesktop.PolicyKit1.Authority.CheckAuthorization"

	// polkit CheckAuthorizationFlags: the user may be asked to authenticate.
	polkitAllowUserInteraction uint32 = 1
)

// peer asks the bus about callers: who they are and what polkit allows.
type peer interface {
	// UnixUser is the uid of the connection with this unique name.
	UnixUser(ctx context.Context, name string) (uint32, error)
	// Authorized asks polkit whether the connection may do action;
	// present is false when polkit is not on the bus.
	Authorized(ctx context.Context, name, action string, interactive bool) (ok, present bool, err error)
	// HasOwner reports whether a name is still on the bus.
	HasOwner(ctx context.Context, name string) (bool, error)
}

// busPeer is peer over a bus connection. It remembers the uid of each
// unique name (a bus never reuses one) until the name leaves the bus.
type busPeer struct {
	conn *godbus.Conn
	mu   sync.Mutex
	uids map[string]uint32
}

// maxUIDCache bounds the uid cache; when full it starts over.
const maxUIDCache = 4096

func newBusPeer(conn *godbus.Conn) *busPeer {
	return &busPeer{conn: conn, uids: make(map[string]uint32)}
}

func (p *busPeer) UnixUser(ctx context.Context, name string) (uint32, error) {
	p.mu.Lock()
	uid, ok := p.uids[name]
	p.mu.Unlock()
	if ok {
		return uid, nil
	}
	err := p.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, name).Store(&uid)
	if err != nil {
		return 0, fmt.Errorf("ask the bus for the uid of %s: %w", name, err)
	}
	// Cache only names still on the bus: a name that left before this
	// answer was read would never be forgotten.
	if has, err := p.HasOwner(ctx, name); err == nil && has {
		p.mu.Lock()
		if len(p.uids) >= maxUIDCache {
			clear(p.uids)
		}
		p.uids[name] = uid
		p.mu.Unlock()
	}
	return uid, nil
}

// forget drops a name that left the bus.
func (p *busPeer) forget(name string) {
	p.mu.Lock()
	delete(p.uids, name)
	p.mu.Unlock()
}

func (p *busPeer) HasOwner(ctx context.Context, name string) (bool, error) {
	var has bool
	err := p.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has)
	if err != nil {
		return false, fmt.Errorf("ask the bus whether %s is there: %w", name, err)
	}
	return has, nil
}

// polkitSubject is polkit's (sa{sv}) subject.
type polkitSubject struct {
	Kind    string
	Details map[string]godbus.Variant
}

// polkitResult is polkit's (bba{ss}) authorization result.
type polkitResult struct {
	IsAuthorized bool
	IsChallenge  bool
	Details      map[string]string
}

func (p *busPeer) Authorized(ctx context.Context, name, action string, interactive bool) (bool, bool, error) {
	subject := polkitSubject{
		Kind:    "system-bus-name",
		Details: map[string]godbus.Variant{"name": godbus.MakeVariant(name)},
	}
	var flags uint32
	if interactive {
		flags = polkitAllowUserInteraction
	}
	var res polkitResult
	err := p.conn.Object(polkitName, polkitPath).CallWithContext(ctx, polkitCheck, 0,
		subject, action, map[string]string{}, flags, "").Store(&res)
	if err != nil {
		if isNoService(err) {
			return false, false, nil
		}
		return false, true, fmt.Errorf("ask polkit about %s for %s: %w", action, name, err)
	}
	return res.IsAuthorized, true, nil
}

// isNoService reports whether err says the name is not on the bus (and
// cannot be activated).
func isNoService(err error) bool {
	var de godbus.Error
	var dp *godbus.Error
	name := ""
	switch {
	case errors.As(err, &dp) && dp != nil:
		name = dp.Name
	case errors.As(err, &de):
		name = de.Name
	}
	return name == "org.freedesktop.DBus.Error.ServiceUnknown" || name == "org.freedesktop.DBus.Error.NameHasNoOwner"
}
