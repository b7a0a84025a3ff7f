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

// Rule is one firewall rule. Its encodings (Fields for D-Bus a{sv}, JSON,
// TOML via RuleFromFields) all use the shared field names; see Fields.
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

// MaxProcessText bounds the text a process chooses for itself,
// Connection.Cmdline and Connection.Unit (a user nests units in a
// delegated cgroup tree): the daemon keeps the first MaxProcessText bytes
// (ending in "…" when cut), and that is what rules match, the log keeps
// and D-Bus carries (whose strings stop at 4,096 bytes).
const MaxProcessText = 4000

// Connection is one new connection as the daemon saw and attributed it.
// Its JSON form (as LogEntry and Verdict) uses stable snake_case names and
// leaves out empty fields; the store keeps the connection log that way.
type Connection struct {
	ID         uint64     `json:"id,omitempty"`
	Time       time.Time  `json:"time,omitzero"`
	Direction  Direction  `json:"direction,omitempty"`
	Proto      Proto      `json:"proto,omitempty"`
	ProtoNum   uint8      `json:"proto_num,omitempty"` // IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...)
	LocalIP    netip.Addr `json:"local_ip,omitzero"`
	LocalPort  uint16     `json:"local_port,omitempty"`
	RemoteIP   netip.Addr `json:"remote_ip,omitzero"`
	RemotePort uint16     `json:"remote_port,omitempty"`
	Iface      string     `json:"iface,omitempty"` // outgoing interface (out) or incoming one (in)

	UID int64 `json:"uid"` // -1 when unknown
	GID int64 `json:"gid"` // -1 when unknown

	// Process facts; PID 0 means the process could not be found and the
	// connection is attributed to its UID alone (Attribution says so).
	PID         int         `json:"pid,omitempty"`
	PIDStart    uint64      `json:"pid_start,omitempty"`
	PPID        int         `json:"ppid,omitempty"`
	Exe         string      `json:"exe,omitempty"`
	ExeClaimed  string      `json:"exe_claimed,omitempty"` // the unverified path when Exe is "": shown, never matched (see daemon/attribution)
	ExeSHA256   string      `json:"exe_sha256,omitempty"`
	Cmdline     string      `json:"cmdline,omitempty"` // at most MaxProcessText bytes
	Unit        string      `json:"unit,omitempty"`    // at most MaxProcessText bytes
	App         string      `json:"app,omitempty"`     // flatpak:<id> or snap:<name>, when the process is one
	User        string      `json:"user,omitempty"`
	Attribution Attribution `json:"attribution,omitempty"`

	Hosts []string `json:"hosts,omitempty"` // names this connection's remote address was resolved from
	// HostSource says whose DNS answer gave Hosts: "process" (the
	// connection's own process), "user" (another process of its user) or
	// "any" (someone else's: a fallback); "" when Hosts is empty.
	HostSource string `json:"host_source,omitempty"`
}

// Where a connection's host names came from (Connection.HostSource).
const (
	HostFromProcess = "process" // its own process resolved the address
	HostFromUser    = "user"    // another process of the same user did
	// Another user's process (or an unknown receiver) did: shown in logs
	// and prompts, but never trusted to match a host rule, or one user
	// could name addresses for another.
	HostFromAny = "any"
)

// Attribution says how a connection was tied to its origin.
type Attribution string

const (
	AttributedProcess Attribution = "process"  // socket inode found and owned by PID
	AttributedUIDOnly Attribution = "uid-only" // the process could not be found; never guessed
	AttributedNone    Attribution = "none"     // not even a uid (e.g. kernel-generated)
)

// Verdict is the decision on one connection.
type Verdict struct {
	Action  Action `json:"action"`
	RuleID  string `json:"rule_id,omitempty"` // rule that decided; "" for the default action
	Reason  string `json:"reason,omitempty"`  // human explanation: which rule won and why, or why the default applied
	Monitor bool   `json:"monitor,omitempty"` // monitor mode: Action is what would have happened, the packet was accepted
	// Unasked: no rule matched and no agent could be asked (none
	// registered, the pending bounds were full, or the agent asked went
	// away), so the default action applied without a prompt. A tray tells
	// its user about such connections afterwards.
	Unasked bool `json:"unasked,omitempty"`
	// Answered: a user's agent answered the prompt (Action is the answer).
	Answered bool `json:"answered,omitempty"`
}

// LogEntry is one record of the connection log.
type LogEntry struct {
	Connection Connection `json:"connection"`
	Verdict    Verdict    `json:"verdict"`
}
