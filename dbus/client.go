package dbus

import (
	"context"
	"errors"
	"fmt"
	"os"

	godbus "github.com/godbus/dbus/v5"
	"github.com/tollgate-fw/tollgate/shared"
)

// SystemBusAddress is the system bus address when DBUS_SYSTEM_BUS_ADDRESS
// is not set.
const SystemBusAddress = "unix:path=/run/dbus/system_bus_socket"

// Client calls the daemon over D-Bus. Every method takes a context first;
// errors from the daemon are *Error, so errors.Is(err, ErrNotAuthorized)
// and friends work.
type Client struct {
	conn  *godbus.Conn
	obj   godbus.BusObject
	owned bool
}

// Connect makes a client on an open, authenticated bus connection. The
// connection stays the caller's: Close does not close it.
func Connect(ctx context.Context, conn *godbus.Conn) (*Client, error) {
	if conn == nil {
		return nil, errors.New("connect to tollgated: no bus connection")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &Client{conn: conn, obj: conn.Object(BusName, ObjectPath)}, nil
}

// Dial opens a private connection to the bus at address ("" = the system
// bus: $DBUS_SYSTEM_BUS_ADDRESS or SystemBusAddress) and makes a client on
// it; Close closes the connection. ctx bounds the dial, not the connection.
func Dial(ctx context.Context, address string) (*Client, error) {
	if address == "" {
		address = os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	}
	if address == "" {
		address = SystemBusAddress
	}
	// ctx bounds the dial only: a connection made WithContext would close
	// when a dial timeout ends.
	type result struct {
		conn *godbus.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := godbus.Connect(address)
		done <- result{conn, err}
	}()
	var conn *godbus.Conn
	select {
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("connect to bus %s: %w", address, ctx.Err())
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to bus %s: %w", address, r.err)
		}
		conn = r.conn
	}
	c, err := Connect(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.owned = true
	return c, nil
}

// Conn returns the client's bus connection.
func (c *Client) Conn() *godbus.Conn { return c.conn }

// Close closes the connection if Dial opened it.
func (c *Client) Close() error {
	if c.owned {
		return c.conn.Close()
	}
	return nil
}

func (c *Client) call(ctx context.Context, method string, out []any, args ...any) error {
	call := c.obj.CallWithContext(ctx, Interface+"."+method, 0, args...)
	if call.Err != nil {
		return fmt.Errorf("%s: %w", method, FromDBusError(call.Err))
	}
	if len(out) > 0 {
		if err := call.Store(out...); err != nil {
			return fmt.Errorf("%s: read reply: %w", method, err)
		}
	}
	return nil
}

// GetStatus returns the daemon's status.
func (c *Client) GetStatus(ctx context.Context) (shared.Status, error) {
	var raw map[string]godbus.Variant
	if err := c.call(ctx, MethodGetStatus, []any{&raw}); err != nil {
		return shared.Status{}, err
	}
	f, err := Fields(raw)
	if err != nil {
		return shared.Status{}, fmt.Errorf("GetStatus: %w", err)
	}
	return shared.StatusFromFields(f)
}

// SetMode sets the mode (enforcing, monitor, disabled).
func (c *Client) SetMode(ctx context.Context, mode string) error {
	return c.call(ctx, MethodSetMode, nil, mode)
}

// ListRules returns the rules the caller may see, sorted by id, however
// many: it pages through them (ListRulesPage). Rules changed meanwhile may
// show as they were or as they became, never twice.
func (c *Client) ListRules(ctx context.Context) ([]shared.Rule, error) {
	var all []shared.Rule
	after := ""
	for {
		page, next, err := c.RulesPage(ctx, after, PageMax)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		if next <= after {
			return nil, fmt.Errorf("%s: the daemon went back from %q to %q", MethodListRulesPage, after, next)
		}
		after = next
	}
}

// RulesPage returns up to limit rules (0: the daemon's default) the caller
// may see whose ids sort after after, and the id to continue after ("" at
// the end).
func (c *Client) RulesPage(ctx context.Context, after string, limit int) ([]shared.Rule, string, error) {
	q := map[string]any{}
	if after != "" {
		q["after"] = after
	}
	if limit > 0 {
		q["limit"] = uint32(min(limit, PageMax))
	}
	var raw []map[string]godbus.Variant
	var next string
	if err := c.call(ctx, MethodListRulesPage, []any{&raw, &next}, Variants(q)); err != nil {
		return nil, "", err
	}
	rs, err := decodeList(MethodListRulesPage, "rule", raw, shared.RuleFromFields)
	return rs, next, err
}

// GetRule returns one rule the caller may see (ErrNotFound otherwise).
func (c *Client) GetRule(ctx context.Context, id string) (shared.Rule, error) {
	var raw map[string]godbus.Variant
	if err := c.call(ctx, MethodGetRule, []any{&raw}, id); err != nil {
		return shared.Rule{}, err
	}
	f, err := Fields(raw)
	if err != nil {
		return shared.Rule{}, fmt.Errorf("%s: %w", MethodGetRule, err)
	}
	return shared.RuleFromFields(f)
}

// decodeList reads a list of records (aa{sv}) a method returned, each with
// dec; errors name the method and the record.
func decodeList[T any](method, what string, raw []map[string]godbus.Variant, dec func(map[string]any) (T, error)) ([]T, error) {
	fs, err := FieldsList(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	out := make([]T, 0, len(fs))
	for i, f := range fs {
		v, err := dec(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %d: %w", method, what, i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// AddRule adds r and returns its id. Bookkeeping fields are not sent.
func (c *Client) AddRule(ctx context.Context, r shared.Rule) (string, error) {
	var id string
	err := c.call(ctx, MethodAddRule, []any{&id}, Variants(writableFields(r)))
	return id, err
}

// AddRuleFields adds a rule given as a field map (as a CLI builds it from
// flags), so fields left out stay absent.
func (c *Client) AddRuleFields(ctx context.Context, f map[string]any) (string, error) {
	var id string
	err := c.call(ctx, MethodAddRule, []any{&id}, Variants(f))
	return id, err
}

// UpdateRule replaces the fields of rule id with r's.
func (c *Client) UpdateRule(ctx context.Context, id string, r shared.Rule) error {
	return c.call(ctx, MethodUpdateRule, nil, id, Variants(writableFields(r)))
}

// DeleteRule deletes rule id.
func (c *Client) DeleteRule(ctx context.Context, id string) error {
	return c.call(ctx, MethodDeleteRule, nil, id)
}

// ExportRules returns the caller's visible forever rules as a TOML rules
// file.
func (c *Client) ExportRules(ctx context.Context) (string, error) {
	var s string
	err := c.call(ctx, MethodExportRules, []any{&s})
	return s, err
}

// ImportRules stores the rules of a TOML rules file and returns how many
// were added (0 when all were there already).
func (c *Client) ImportRules(ctx context.Context, toml string) (int, error) {
	var n uint32
	err := c.call(ctx, MethodImportRules, []any{&n}, toml)
	return int(n), err
}

// RegisterAgent makes this connection an agent of the caller's uid.
func (c *Client) RegisterAgent(ctx context.Context) error {
	return c.call(ctx, MethodRegisterAgent, nil)
}

// UnregisterAgent ends this connection's agent registration.
func (c *Client) UnregisterAgent(ctx context.Context) error {
	return c.call(ctx, MethodUnregisterAgent, nil)
}

// ListPending returns the pending groups the caller may see.
func (c *Client) ListPending(ctx context.Context) ([]shared.Pending, error) {
	var raw []map[string]godbus.Variant
	if err := c.call(ctx, MethodListPending, []any{&raw}); err != nil {
		return nil, err
	}
	return decodeList(MethodListPending, "record", raw, shared.PendingFromFields)
}

// Answer answers pending group a.PendingID.
func (c *Client) Answer(ctx context.Context, a shared.Answer) error {
	return c.call(ctx, MethodAnswer, nil, a.PendingID, string(a.Action), string(a.Lifetime),
		string(a.Scope), Variants(a.Options()))
}

// RecentConnections returns connection log entries, newest first.
func (c *Client) RecentConnections(ctx context.Context, f shared.LogFilter) ([]shared.LogEntry, error) {
	var raw []map[string]godbus.Variant
	if err := c.call(ctx, MethodRecentConnections, []any{&raw}, Variants(f.Fields())); err != nil {
		return nil, err
	}
	return decodeList(MethodRecentConnections, "record", raw, shared.LogEntryFromFields)
}

// Explain asks which rules match connection c and which one decides.
func (c *Client) Explain(ctx context.Context, conn shared.Connection) (shared.Explanation, error) {
	var text string
	var raw []map[string]godbus.Variant
	if err := c.call(ctx, MethodExplain, []any{&text, &raw}, Variants(conn.Fields())); err != nil {
		return shared.Explanation{}, err
	}
	cands, err := decodeList(MethodExplain, "candidate", raw, shared.CandidateFromFields)
	if err != nil {
		return shared.Explanation{}, err
	}
	return shared.Explanation{Text: text, Candidates: cands}, nil
}

// writableFields are r's fields without the bookkeeping the daemon keeps.
func writableFields(r shared.Rule) map[string]any {
	f := r.Fields()
	for k := range f {
		if shared.IsBookkeepingField(k) {
			delete(f, k)
		}
	}
	return f
}

// Signal is one signal of the daemon. Name says which; the other fields are
// set as the signal carries them.
type Signal struct {
	Name    string         // SignalConnectionPending, SignalPendingResolved, SignalRulesChanged, SignalStatusChanged, SignalDaemonChanged
	Pending shared.Pending // ConnectionPending
	ID      uint64         // PendingResolved
	Action  shared.Action  // PendingResolved
	Status  shared.Status  // StatusChanged
	Owner   string         // DaemonChanged: the daemon's new unique name, "" when it left the bus
}

// SignalDaemonChanged is not a signal of the interface: Signals makes it
// from the bus's NameOwnerChanged for BusName, when the daemon leaves the
// bus or comes back (a restart). An agent registers again when Owner is
// set: the new daemon does not know it.
const SignalDaemonChanged = "DaemonChanged"

// Signals subscribes to the daemon's signals until ctx ends; then the
// channel is closed. ConnectionPending reaches only registered agents (it
// is sent to them directly). Signals that cannot be read are dropped; a
// slow reader loses signals rather than blocking the connection.
func (c *Client) Signals(ctx context.Context) (<-chan Signal, error) {
	opts := []godbus.MatchOption{
		godbus.WithMatchInterface(Interface),
		godbus.WithMatchObjectPath(ObjectPath),
	}
	if err := c.conn.AddMatchSignalContext(ctx, opts...); err != nil {
		return nil, fmt.Errorf("subscribe to tollgated signals: %w", err)
	}
	owner := []godbus.MatchOption{
		godbus.WithMatchSender("org.freedesktop.DBus"),
		godbus.WithMatchInterface("org.freedesktop.DBus"),
		godbus.WithMatchMember("NameOwnerChanged"),
		godbus.WithMatchArg(0, BusName),
	}
	if err := c.conn.AddMatchSignalContext(ctx, owner...); err != nil {
		_ = c.conn.RemoveMatchSignalContext(ctx, opts...)
		return nil, fmt.Errorf("watch tollgated on the bus: %w", err)
	}
	// Anyone on the bus may send a signal to anyone: only those from the
	// daemon's connection (and the bus's own NameOwnerChanged) count.
	var daemon string
	err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&daemon)
	if err != nil && !isNameHasNoOwner(err) {
		_ = c.conn.RemoveMatchSignalContext(ctx, opts...)
		_ = c.conn.RemoveMatchSignalContext(ctx, owner...)
		return nil, fmt.Errorf("find tollgated on the bus: %w", err)
	}
	raw := make(chan *godbus.Signal, 64)
	c.conn.Signal(raw)
	out := make(chan Signal, 64)
	go func() {
		defer close(out)
		defer func() {
			c.conn.RemoveSignal(raw)
			// Best effort: the connection may be gone already.
			_ = c.conn.RemoveMatchSignalContext(context.Background(), opts...)
			_ = c.conn.RemoveMatchSignalContext(context.Background(), owner...)
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.conn.Context().Done():
				return
			case s, ok := <-raw:
				if !ok {
					return
				}
				if s == nil || (s.Sender != daemon && s.Sender != "org.freedesktop.DBus") || (s.Sender == "org.freedesktop.DBus" && s.Path == ObjectPath) {
					continue
				}
				sig, ok := ParseSignal(s)
				if !ok || (sig.Name == SignalDaemonChanged) != (s.Sender == "org.freedesktop.DBus") {
					continue
				}
				if sig.Name == SignalDaemonChanged {
					daemon = sig.Owner
				}
				select {
				case out <- sig:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// ParseSignal reads a godbus signal of the daemon's interface (or the bus's
// NameOwnerChanged for BusName); ok is false for other signals and for
// bodies that do not match the XML. It does not check who sent the signal:
// Signals does (anyone may send a signal to anyone).
func ParseSignal(s *godbus.Signal) (Signal, bool) {
	if s != nil && s.Name == "org.freedesktop.DBus.NameOwnerChanged" && len(s.Body) == 3 {
		name, _ := s.Body[0].(string)
		newOwner, ok := s.Body[2].(string)
		if name != BusName || !ok {
			return Signal{}, false
		}
		return Signal{Name: SignalDaemonChanged, Owner: newOwner}, true
	}
	if s == nil || s.Path != ObjectPath {
		return Signal{}, false
	}
	iface, member := splitMember(s.Name)
	if iface != Interface {
		return Signal{}, false
	}
	sig := Signal{Name: member}
	switch member {
	case SignalConnectionPending:
		f, ok := bodyFields(s.Body)
		if !ok {
			return Signal{}, false
		}
		var err error
		if sig.Pending, err = shared.PendingFromFields(f); err != nil {
			return Signal{}, false
		}
	case SignalPendingResolved:
		if len(s.Body) != 2 {
			return Signal{}, false
		}
		id, ok1 := s.Body[0].(uint64)
		a, ok2 := s.Body[1].(string)
		if !ok1 || !ok2 {
			return Signal{}, false
		}
		sig.ID, sig.Action = id, shared.Action(a)
	case SignalRulesChanged:
	case SignalStatusChanged:
		f, ok := bodyFields(s.Body)
		if !ok {
			return Signal{}, false
		}
		var err error
		if sig.Status, err = shared.StatusFromFields(f); err != nil {
			return Signal{}, false
		}
	default:
		return Signal{}, false
	}
	return sig, true
}

func splitMember(name string) (iface, member string) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '.' {
			return name[:i], name[i+1:]
		}
	}
	return "", name
}

func isNameHasNoOwner(err error) bool {
	var de godbus.Error
	var dp *godbus.Error
	switch {
	case errors.As(err, &dp) && dp != nil:
		return dp.Name == "org.freedesktop.DBus.Error.NameHasNoOwner"
	case errors.As(err, &de):
		return de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner"
	}
	return false
}

// bodyFields reads a signal body that is one a{sv}, bounded like every
// field map from the bus.
func bodyFields(body []any) (map[string]any, bool) {
	if len(body) != 1 {
		return nil, false
	}
	raw, ok := body[0].(map[string]godbus.Variant)
	if !ok {
		return nil, false
	}
	f, err := Fields(raw)
	return f, err == nil
}
