// Package bus is the daemon's side of the system D-Bus interface
// org.tollgate.Firewall1: it owns the bus name, exports the object described
// by the XML in package dbus, authorizes every call (caller uid from the bus,
// polkit for org.tollgate.manage, uid 0 when polkit is absent), bounds and
// rate-limits input, keeps the registry of agents, and sends the signals
// (ConnectionPending only to the agents entitled to answer it).
//
// It must not decide connections, store rules or hold pending packets: those
// are the Backend's (the service and its broker). The firewall never depends
// on this package: when the bus is missing or goes away, Run logs it and
// reconnects with backoff while the daemon keeps deciding.
//
// Wiring (the service):
//
//	srv, err := bus.New(bus.Options{Backend: svc, Log: log})
//	go func() { err := srv.Run(ctx); ... log it, keep running ... }()
//	// broker: ask only when someone can answer
//	if len(srv.Entitled(conn.UID)) == 0 { /* default action at once */ }
//	srv.ConnectionPending(p)      // unicast to those agents
//	srv.PendingResolved(id, act)  // and RulesChanged, StatusChanged
//
// Agents are connections that called RegisterAgent; the backend hears of
// them through AgentRegistered and AgentGone (unregistered, left the bus,
// or the bus went away).
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// Caller is who made a call.
type Caller struct {
	UID   uint32 // from org.freedesktop.DBus.GetConnectionUnixUser
	Name  string // unique bus name of the caller's connection
	Admin bool   // root, or polkit allows org.tollgate.manage (checked only where a call needs it)
}

// Backend does what the calls ask. The service implements it. The bus
// layer has already checked the caller's rights as documented on each
// method and filters what it returns by them; the backend gets the Caller
// to own what it makes (rules of the caller, sessions of the agent).
// Errors wrapping dbus.ErrNotFound, ErrInvalidArgument, ErrNotAuthorized or
// ErrBusy reach the client under those names; other errors as Failed.
type Backend interface {
	// Status is the daemon's status as seen by c (counts of what c may see).
	Status(ctx context.Context, c Caller) (shared.Status, error)
	// SetMode puts a mode in force (checked: enforcing|monitor|disabled, admin).
	SetMode(ctx context.Context, c Caller, mode string) error
	// RulesPage returns, sorted by id, up to limit of the rules c may see
	// whose ids sort after after ("": from the first), and whether more
	// follow (the bus layer filters them for c too).
	RulesPage(ctx context.Context, c Caller, after string, limit int) ([]shared.Rule, bool, error)
	// Rule returns one rule, or an error wrapping dbus.ErrNotFound.
	Rule(ctx context.Context, id string) (shared.Rule, error)
	// AddRule stores a normalized, valid rule whose owner the bus layer
	// has settled (c's uid, or any owner for an admin) and returns its id.
	AddRule(ctx context.Context, c Caller, r shared.Rule) (string, error)
	// UpdateRule replaces rule id (checked: c owns it or is admin).
	UpdateRule(ctx context.Context, c Caller, id string, r shared.Rule) error
	// DeleteRule deletes rule id (checked: c owns it or is admin).
	DeleteRule(ctx context.Context, c Caller, id string) error
	// ExportRules writes the forever rules c may see as a TOML rules file;
	// the backend filters by c (uid's rules and system rules; admin: all).
	ExportRules(ctx context.Context, c Caller) (string, error)
	// ImportRules stores a TOML rules file's rules as forever system rules,
	// skipping those already stored; returns how many were added (admin).
	ImportRules(ctx context.Context, c Caller, toml string) (int, error)
	// AgentRegistered says c's connection is now an agent of c.UID.
	AgentRegistered(c Caller)
	// AgentGone says the agent with this unique name unregistered or left
	// the bus: its pending groups get the default action, its session
	// rules end.
	AgentGone(name string)
	// PendingGroups returns the open pending groups (the bus layer filters them).
	PendingGroups(ctx context.Context) ([]shared.Pending, error)
	// PendingGroup returns one open group, or an error wrapping dbus.ErrNotFound.
	PendingGroup(ctx context.Context, id uint64) (shared.Pending, error)
	// Answer settles a pending group (checked: c is an agent of the
	// group's uid or an admin; System only for admins).
	Answer(ctx context.Context, c Caller, a shared.Answer) error
	// RecentConnections returns log entries, newest first, matching f (for
	// non-admins f.UID is always the caller's uid; the bus layer filters too).
	RecentConnections(ctx context.Context, c Caller, f shared.LogFilter) ([]shared.LogEntry, error)
	// Explain says which rules match conn and which decides (for
	// non-admins conn.UID is always the caller's uid).
	Explain(ctx context.Context, c Caller, conn shared.Connection) (shared.Explanation, error)
}

// Defaults for Options.
const (
	DefaultRateLimit       = 20  // calls a second per unprivileged uid
	DefaultRateBurst       = 100 // calls at once per unprivileged uid
	DefaultMaxAgentsPerUID = 8
	DefaultCallTimeout     = 2 * time.Minute // room for a polkit password dialog
	DefaultMinBackoff      = 250 * time.Millisecond
	DefaultMaxBackoff      = 15 * time.Second
)

// Options configure the server.
type Options struct {
	Address        string // bus address; "" = the system bus ($DBUS_SYSTEM_BUS_ADDRESS or the standard socket)
	Backend        Backend
	Log            *slog.Logger
	PolkitDisabled bool // never ask polkit: only uid 0 is admin

	RateLimit       float64 // calls a second per unprivileged uid; 0 = DefaultRateLimit, <0 = unlimited
	RateBurst       int     // 0 = DefaultRateBurst
	MaxAgentsPerUID int     // 0 = DefaultMaxAgentsPerUID
	CallTimeout     time.Duration
	MinBackoff      time.Duration // reconnect backoff, doubling up to MaxBackoff
	MaxBackoff      time.Duration
}

// ErrNameNotAllowed: the bus policy does not let this process own
// org.tollgate.Firewall1 (the D-Bus policy file is missing, or not root).
var ErrNameNotAllowed = errors.New("the bus does not allow this process to own " + dbus.BusName)

// ErrNameTaken: another connection owns org.tollgate.Firewall1.
var ErrNameTaken = errors.New(dbus.BusName + " is owned by another process")

// Server is the D-Bus service. Make it with New, run it with Run, and call
// its signal methods from the backend; they do nothing while the bus is
// away.
type Server struct {
	opts    Options
	log     *slog.Logger
	backend Backend
	limit   *limiter

	mu      sync.Mutex
	conn    *godbus.Conn
	connCtx context.Context // ends when conn closes
	peer    peer
	agents  map[string]agent // unique name → agent
}

type agent struct {
	uid   uint32
	admin bool
}

// New checks opts and makes a server.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("bus: no backend")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = DefaultRateLimit
	}
	if opts.RateBurst == 0 {
		opts.RateBurst = DefaultRateBurst
	}
	if opts.MaxAgentsPerUID <= 0 {
		opts.MaxAgentsPerUID = DefaultMaxAgentsPerUID
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	return &Server{
		opts:    opts,
		log:     opts.Log,
		backend: opts.Backend,
		limit:   newLimiter(opts.RateLimit, opts.RateBurst, time.Now),
		agents:  make(map[string]agent),
	}, nil
}

// Serve is New then Run.
func Serve(ctx context.Context, opts Options) error {
	s, err := New(opts)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run connects to the bus, owns the name, serves calls, and reconnects
// with backoff whenever the bus is missing or goes away, until ctx ends
// (then it returns nil). It returns early only with an error wrapping
// ErrNameNotAllowed: a packaging fault retrying would not fix; the daemon
// logs it and goes on without the bus.
func (s *Server) Run(ctx context.Context) error {
	backoff := s.opts.MinBackoff
	lastErr := ""
	for {
		conn, err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrNameNotAllowed) {
				return err
			}
			// Log each new kind of failure once, not every retry.
			if msg := err.Error(); msg != lastErr {
				s.log.Warn("D-Bus unavailable: deciding without agents, retrying", "err", err, "retry", backoff)
				lastErr = msg
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(backoff*2, s.opts.MaxBackoff)
			continue
		}
		backoff, lastErr = s.opts.MinBackoff, ""
		s.log.Info("serving on D-Bus", "name", dbus.BusName, "address", s.address())
		select {
		case <-ctx.Done():
			s.drop(conn)
			conn.Close()
			return nil
		case <-conn.Context().Done():
			s.drop(conn)
			s.log.Warn("lost the D-Bus connection: deciding without agents, reconnecting")
		}
	}
}

// Connected reports whether the server owns its name on a live bus
// connection.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil && s.conn.Connected()
}

// uniqueName is the server's unique name on the bus ("" when away).
func (s *Server) uniqueName() string {
	conn, _ := s.current()
	if conn == nil || len(conn.Names()) == 0 {
		return ""
	}
	return conn.Names()[0]
}

func (s *Server) address() string {
	if s.opts.Address != "" {
		return s.opts.Address
	}
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	return dbus.SystemBusAddress
}

// connect opens the bus, exports the object and takes the name.
func (s *Server) connect(ctx context.Context) (*godbus.Conn, error) {
	conn, err := godbus.Connect(s.address(), godbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("connect to bus %s: %w", s.address(), err)
	}
	fail := func(err error) (*godbus.Conn, error) {
		conn.Close()
		return nil, err
	}
	obj := &object{s: s}
	if err := conn.Export(obj, dbus.ObjectPath, dbus.Interface); err != nil {
		return fail(fmt.Errorf("export %s: %w", dbus.ObjectPath, err))
	}
	if err := conn.Export(introspect.Introspectable(dbus.IntrospectionXML), dbus.ObjectPath,
		"org.freedesktop.DBus.Introspectable"); err != nil {
		return fail(fmt.Errorf("export introspection: %w", err))
	}
	// The path's parents introspect to their child, so tools can walk the tree.
	for path, child := range map[godbus.ObjectPath]string{"/": "org", "/org": "tollgate", "/org/tollgate": "Firewall1"} {
		xml := introspect.Introspectable(`<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node><node name="` + child + `"/></node>
`)
		if err := conn.Export(xml, path, "org.freedesktop.DBus.Introspectable"); err != nil {
			return fail(fmt.Errorf("export introspection of %s: %w", path, err))
		}
	}
	if err := conn.AddMatchSignalContext(ctx,
		godbus.WithMatchSender("org.freedesktop.DBus"),
		godbus.WithMatchInterface("org.freedesktop.DBus"),
		godbus.WithMatchMember("NameOwnerChanged")); err != nil {
		return fail(fmt.Errorf("watch NameOwnerChanged: %w", err))
	}
	sigs := make(chan *godbus.Signal, 256)
	conn.Signal(sigs)
	bp := newBusPeer(conn)
	go s.watch(conn, bp, sigs)

	s.mu.Lock()
	s.conn, s.connCtx, s.peer = conn, conn.Context(), bp
	s.mu.Unlock()

	reply, err := conn.RequestName(dbus.BusName, godbus.NameFlagDoNotQueue)
	if err != nil {
		s.drop(conn)
		var de godbus.Error
		if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.AccessDenied" {
			return fail(fmt.Errorf("request name %s: %w: %v", dbus.BusName, ErrNameNotAllowed, err))
		}
		return fail(fmt.Errorf("request name %s: %w", dbus.BusName, err))
	}
	if reply != godbus.RequestNameReplyPrimaryOwner && reply != godbus.RequestNameReplyAlreadyOwner {
		s.drop(conn)
		return fail(fmt.Errorf("request name: %w", ErrNameTaken))
	}
	return conn, nil
}

// drop forgets conn (if current) and every agent on it.
func (s *Server) drop(conn *godbus.Conn) {
	s.mu.Lock()
	if s.conn != conn {
		s.mu.Unlock()
		return
	}
	s.conn, s.connCtx, s.peer = nil, nil, nil
	gone := make([]string, 0, len(s.agents))
	for name := range s.agents {
		gone = append(gone, name)
	}
	clear(s.agents)
	s.mu.Unlock()
	for _, name := range gone {
		s.backend.AgentGone(name)
	}
}

// watch forgets agents whose connection leaves the bus.
func (s *Server) watch(conn *godbus.Conn, bp *busPeer, sigs <-chan *godbus.Signal) {
	for sig := range sigs { // closed when conn closes
		// Anyone may send a signal to anyone: only the bus's own counts.
		if sig.Sender != "org.freedesktop.DBus" || sig.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(sig.Body) != 3 {
			continue
		}
		name, _ := sig.Body[0].(string)
		newOwner, _ := sig.Body[2].(string)
		if newOwner == "" && name != "" {
			bp.forget(name)
			s.forgetAgent(conn, name)
		}
	}
}

// forgetAgent removes an agent of conn; reports whether there was one.
func (s *Server) forgetAgent(conn *godbus.Conn, name string) bool {
	s.mu.Lock()
	_, ok := s.agents[name]
	if ok && s.conn == conn {
		delete(s.agents, name)
	} else {
		ok = false
	}
	s.mu.Unlock()
	if ok {
		s.log.Info("agent gone", "name", name)
		s.backend.AgentGone(name)
	}
	return ok
}

// Agents returns the registered agents' unique names and uids.
func (s *Server) Agents() map[string]uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint32, len(s.agents))
	for n, a := range s.agents {
		out[n] = a.uid
	}
	return out
}

// systemUIDMax: uids up to this are system users (Debian's SYS_UID_MAX),
// whose connections admin agents may answer.
const systemUIDMax = 999

// Entitled returns the unique names of the agents that may answer a
// connection of uid: that uid's agents; for a system user (or an unknown
// uid, -1) without agents of its own, the admin agents.
func (s *Server) Entitled(uid int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var own, admins []string
	for name, a := range s.agents {
		if uid >= 0 && int64(a.uid) == uid {
			own = append(own, name)
		} else if a.admin {
			admins = append(admins, name)
		}
	}
	if len(own) > 0 || uid > systemUIDMax {
		return own
	}
	return admins
}

// mayAnswer reports whether the agent name may answer uid's connections.
func (s *Server) mayAnswer(name string, uid int64) bool {
	for _, n := range s.Entitled(uid) {
		if n == name {
			return true
		}
	}
	return false
}

func (s *Server) current() (*godbus.Conn, peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.peer
}

func (s *Server) callContext() (context.Context, peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connCtx, s.peer
}

// ConnectionPending sends the ConnectionPending signal to each entitled
// agent (unicast: never broadcast) and returns how many it was sent to.
func (s *Server) ConnectionPending(p shared.Pending) int {
	conn, _ := s.current()
	if conn == nil {
		return 0
	}
	body := dbus.Variants(p.Fields())
	sent := 0
	for _, name := range s.Entitled(p.Connection.UID) {
		if err := s.send(conn, name, dbus.SignalConnectionPending, body); err != nil {
			s.log.Warn("send ConnectionPending", "agent", name, "pending", p.ID, "err", err)
			continue
		}
		sent++
	}
	return sent
}

// PendingResolved broadcasts that a pending group was settled.
func (s *Server) PendingResolved(id uint64, action shared.Action) {
	s.broadcast(dbus.SignalPendingResolved, id, string(action))
}

// RulesChanged broadcasts that the rules changed.
func (s *Server) RulesChanged() { s.broadcast(dbus.SignalRulesChanged) }

// StatusChanged broadcasts the new status.
func (s *Server) StatusChanged(st shared.Status) {
	s.broadcast(dbus.SignalStatusChanged, dbus.Variants(st.Fields()))
}

func (s *Server) broadcast(member string, body ...any) {
	conn, _ := s.current()
	if conn == nil {
		return
	}
	if err := s.send(conn, "", member, body...); err != nil {
		s.log.Warn("send signal", "signal", member, "err", err)
	}
}

// send emits a signal of the interface, to dest only when dest is set.
func (s *Server) send(conn *godbus.Conn, dest, member string, body ...any) error {
	msg := &godbus.Message{
		Type: godbus.TypeSignal,
		Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldPath:      godbus.MakeVariant(dbus.ObjectPath),
			godbus.FieldInterface: godbus.MakeVariant(dbus.Interface),
			godbus.FieldMember:    godbus.MakeVariant(member),
		},
		Body: body,
	}
	if dest != "" {
		msg.Headers[godbus.FieldDestination] = godbus.MakeVariant(dest)
	}
	if len(body) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	return conn.Send(msg, nil).Err
}
