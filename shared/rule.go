// Package shared holds the types the daemon and its clients speak: rules,
// connections, verdicts and lifetimes, with their validation and encoding.
//
// It owns the one set of field names used everywhere (TOML rules files, JSON
// export, D-Bus a{sv}, CLI flags). It must stay standard-library only and must
// not know about the kernel, D-Bus, bbolt or any UI toolkit.
package shared

import (
	"net/netip"
	"time"
)

// Action is what a rule (or the default) does with a connection.
type Action string

const (
	ActionAllow  Action = "allow"
	ActionDeny   Action = "deny"   // drop silently: the application waits for a timeout
	ActionReject Action = "reject" // fail at once: TCP reset / ICMP unreachable
)

// Lifetime says how long a rule lives.
type Lifetime string

const (
	LifetimeOnce    Lifetime = "once"    // this pending group only, never stored
	LifetimeSession Lifetime = "session" // until the answering agent's session ends or the daemon restarts
	LifetimeProcess Lifetime = "process" // until the process it was made for exits
	LifetimeUntil   Lifetime = "until"   // until Rule.Until
	LifetimeForever Lifetime = "forever" // stored in the database
)

// Direction of a connection, seen from this machine.
type Direction string

const (
	DirectionOut Direction = "out"
	DirectionIn  Direction = "in"
)

// Proto is a transport protocol a rule can name.
type Proto string

const (
	ProtoAny  Proto = "any"
	ProtoTCP  Proto = "tcp"
	ProtoUDP  Proto = "udp"
	ProtoICMP Proto = "icmp" // ICMP and ICMPv6
)

// OwnerSystem is the owner of system rules: they apply to every user.
const OwnerSystem uint32 = 0

// PortRange is an inclusive range of ports; the zero value means "any port".
type PortRange struct {
	Lo, Hi uint16
}

// Match holds the conditions of a rule. Every field that is set must hold;
// an unset field matches anything.
type Match struct {
	Exe       string       // executable path, exact or glob (path.Match syntax)
	ExeSHA256 string       // lower-case hex sha256 of the executable
	Cmdline   string       // command line (arguments joined by spaces), exact or glob
	Unit      string       // cgroup path or systemd unit name, exact or glob
	UID       *uint32      // user id of the socket
	GID       *uint32      // group id of the socket
	Direction Direction    // "" = both
	Proto     Proto        // "" or "any" = all
	Host      string       // "example.org" or "*.example.org"
	IP        netip.Prefix // remote address or CIDR; invalid = any
	Port      PortRange    // remote port
	LocalPort PortRange    // local port
	Iface     string       // interface name
}

// Rule is one firewall rule.
type Rule struct {
	ID       string
	Name     string
	Action   Action
	Lifetime Lifetime
	Until    time.Time // for LifetimeUntil
	Owner    uint32    // uid the rule belongs to; OwnerSystem for system rules
	Enabled  bool
	Priority int // explicit priority: higher wins over any specificity
	Note     string
	Match    Match

	// Binding of lifetimes that end with something outside the rule.
	PID      int    // LifetimeProcess: the process the rule was made for
	PIDStart uint64 // its start time (clock ticks since boot), so a reused pid does not inherit the rule
	Session  string // LifetimeSession: the agent session (D-Bus unique name) that made it

	// Bookkeeping kept by the daemon.
	Source   string // "store", "rules.d/<file>", "session"...; system rules from files are read-only
	ReadOnly bool
	Created  time.Time
	Updated  time.Time
	Hits     uint64
	LastHit  time.Time
}

// Connection is one new connection as the daemon saw and attributed it.
type Connection struct {
	ID         uint64
	Time       time.Time
	Direction  Direction
	Proto      Proto
	ProtoNum   uint8 // IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...)
	LocalIP    netip.Addr
	LocalPort  uint16
	RemoteIP   netip.Addr
	RemotePort uint16
	Iface      string // outgoing interface (out) or incoming one (in)

	UID int64 // -1 when unknown
	GID int64 // -1 when unknown

	// Process facts; PID 0 means the process could not be found and the
	// connection is attributed to its UID alone (Attribution says so).
	PID         int
	PIDStart    uint64
	PPID        int
	Exe         string
	ExeSHA256   string
	Cmdline     string
	Unit        string
	User        string
	Attribution Attribution

	Hosts []string // names this connection's remote address was resolved from
}

// Attribution says how a connection was tied to its origin.
type Attribution string

const (
	AttributedProcess Attribution = "process"  // socket inode found and owned by PID
	AttributedUIDOnly Attribution = "uid-only" // the process could not be found; never guessed
	AttributedNone    Attribution = "none"     // not even a uid (e.g. kernel-generated)
)

// Verdict is the decision on one connection.
type Verdict struct {
	Action  Action
	RuleID  string // rule that decided; "" for the default action
	Reason  string // human explanation: which rule won and why, or why the default applied
	Monitor bool   // monitor mode: Action is what would have happened, the packet was accepted
}

// LogEntry is one record of the connection log.
type LogEntry struct {
	Connection Connection
	Verdict    Verdict
}
