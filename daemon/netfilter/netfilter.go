// Package netfilter owns the daemon's own iptables chains: it installs them
// (IPv4 and IPv6, filter table, jumped to from the top of OUTPUT and INPUT),
// replaces stale ones left by a crashed run, and removes them on exit.
//
// The chains send only connection-opening packets (conntrack state NEW) to
// the daemon's NFQUEUE, optionally send DNS answers to a second queue, and
// reject packets the daemon has marked with the reject bit. Loopback returns
// early unless intercepted; without --queue-bypass (the default) a new
// connection fails while nobody reads the queue.
//
// It must not touch any chain or rule it did not create, other than adding
// and removing its own jump rules in the built-in INPUT and OUTPUT chains,
// and it must not read packets or decide verdicts: that is the queue's job.
package netfilter

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Chain names the daemon owns in the filter table of both families.
const (
	ChainOut = "TOLLGATE-OUT" // jumped to from OUTPUT
	ChainIn  = "TOLLGATE-IN"  // jumped to from INPUT, when inbound or DNS answers are queued

	table = "filter"
)

// Backends (Options.Backend), named as in the configuration key
// iptables_backend.
const (
	BackendAuto   = "auto"   // the system's iptables and ip6tables
	BackendNFT    = "nft"    // iptables-nft and ip6tables-nft
	BackendLegacy = "legacy" // iptables-legacy and ip6tables-legacy
)

// Defaults for zero Options fields.
const (
	DefaultRejectMark = 0x100000
	DefaultLockWait   = 10 * time.Second
)

// ErrInvalidOptions is returned (wrapped) by New for options that cannot work.
var ErrInvalidOptions = errors.New("invalid netfilter options")

// ErrIPv6Unavailable is returned (wrapped) by New when the kernel has IPv6
// but ip6tables cannot be used: the daemon would leave IPv6 unfiltered.
var ErrIPv6Unavailable = errors.New("ipv6 is enabled but ip6tables cannot be used")

// Options say which rules to install.
type Options struct {
	// QueueNum is the NFQUEUE that receives new connections.
	QueueNum uint16
	// DNSQueueNum, when set, is the NFQUEUE that receives DNS answers (UDP
	// source port 53, loopback included), always with --queue-bypass.
	DNSQueueNum *uint16
	// FailOpen adds --queue-bypass to the new-connection rules: while
	// nobody reads the queue, new connections pass instead of failing.
	FailOpen bool
	// InterceptLoopback queues loopback connections too.
	InterceptLoopback bool
	// Inbound queues new inbound connections (INPUT) too.
	Inbound bool
	// RejectMark is the packet-mark bit the daemon sets (with NF_REPEAT) on
	// a packet to be rejected. One bit; 0 means DefaultRejectMark.
	RejectMark uint32
	// AcceptMarkOut and AcceptMarkIn are the packet-mark bits the daemon
	// sets (with NF_REPEAT) on a packet it allows, outbound and inbound: the
	// packet re-enters the hook, returns from our chain at once and goes on
	// through the rest of the built-in chain, so the daemon's allow never
	// overrides a drop that other rules after our jump would make. Two bits,
	// because a loopback packet allowed on its way out still needs the
	// inbound decision. 0 means plain NF_ACCEPT for that direction (the
	// packet leaves the hook).
	AcceptMarkOut, AcceptMarkIn uint32
	// Backend is BackendAuto, BackendNFT or BackendLegacy; "" means auto.
	Backend string
	// LockWait bounds the wait for the xtables lock (legacy backend), in
	// whole seconds rounded up; 0 means DefaultLockWait.
	LockWait time.Duration
}

// withDefaults fills zero fields and validates the rest.
func (o Options) withDefaults() (Options, error) {
	if o.RejectMark == 0 {
		o.RejectMark = DefaultRejectMark
	}
	if o.RejectMark&(o.RejectMark-1) != 0 {
		return o, fmt.Errorf("%w: reject mark %#x is not a single bit", ErrInvalidOptions, o.RejectMark)
	}
	for _, b := range []struct {
		name string
		bit  uint32
	}{{"accept mark out", o.AcceptMarkOut}, {"accept mark in", o.AcceptMarkIn}} {
		if b.bit == 0 {
			continue
		}
		if b.bit&(b.bit-1) != 0 || b.bit == o.RejectMark {
			return o, fmt.Errorf("%w: %s %#x is not a single bit apart from the reject mark", ErrInvalidOptions, b.name, b.bit)
		}
	}
	if o.AcceptMarkOut != 0 && o.AcceptMarkOut == o.AcceptMarkIn {
		return o, fmt.Errorf("%w: accept marks in and out are the same bit %#x", ErrInvalidOptions, o.AcceptMarkIn)
	}
	switch o.Backend {
	case "":
		o.Backend = BackendAuto
	case BackendAuto, BackendNFT, BackendLegacy:
	default:
		return o, fmt.Errorf("%w: backend %q (want auto, nft or legacy)", ErrInvalidOptions, o.Backend)
	}
	if o.DNSQueueNum != nil && *o.DNSQueueNum == o.QueueNum {
		return o, fmt.Errorf("%w: DNS queue and connection queue are both %d", ErrInvalidOptions, o.QueueNum)
	}
	switch {
	case o.LockWait < 0:
		return o, fmt.Errorf("%w: negative lock wait %s", ErrInvalidOptions, o.LockWait)
	case o.LockWait == 0:
		o.LockWait = DefaultLockWait
	}
	return o, nil
}

// lockWaitSeconds is the --wait argument: whole seconds, rounded up, at
// least one (go-iptables treats 0 as "wait forever").
func (o Options) lockWaitSeconds() int {
	s := int((o.LockWait + time.Second - 1) / time.Second)
	return max(s, 1)
}

// binaries returns the iptables and ip6tables commands of the backend.
func (o Options) binaries() (v4, v6 string) {
	switch o.Backend {
	case BackendNFT:
		return "iptables-nft", "ip6tables-nft"
	case BackendLegacy:
		return "iptables-legacy", "ip6tables-legacy"
	default:
		return "iptables", "ip6tables"
	}
}

// ruleTable is the part of go-iptables' *IPTables the manager uses, for
// one address family. Tests use a fake that keeps the rule set as state.
type ruleTable interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	ClearChain(table, chain string) error
	DeleteChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Append(table, chain string, rulespec ...string) error
	Insert(table, chain string, pos int, rulespec ...string) error
	DeleteById(table, chain string, id int) error
}

type family struct {
	name string // "ipv4" or "ipv6", for errors and logs
	v6   bool
	t    ruleTable
}

// Manager installs and removes the daemon's chains. Its methods are safe
// for concurrent use.
type Manager struct {
	mu   sync.Mutex
	opts Options
	log  *slog.Logger
	fams []family
}

// environment is what New needs from the system, so its IPv6 decision can
// be tested without a kernel.
type environment struct {
	// open returns the iptables of one family, by command name.
	open func(command string, v6 bool, lockWaitSeconds int) (ruleTable, error)
	// ipv6Enabled reports whether the kernel has an IPv6 stack.
	ipv6Enabled func() bool
}

func newWith(opts Options, log *slog.Logger, env environment) (*Manager, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cmd4, cmd6 := opts.binaries()
	t4, err := env.open(cmd4, false, opts.lockWaitSeconds())
	if err != nil {
		return nil, fmt.Errorf("open %s (backend %s): %w", cmd4, opts.Backend, err)
	}
	fams := []family{{name: "ipv4", t: t4}}
	if env.ipv6Enabled() {
		t6, err := env.open(cmd6, true, opts.lockWaitSeconds())
		if err != nil {
			return nil, fmt.Errorf("%w: open %s (backend %s): %w", ErrIPv6Unavailable, cmd6, opts.Backend, err)
		}
		fams = append(fams, family{name: "ipv6", v6: true, t: t6})
	} else {
		if log != nil {
			log.Warn("kernel has no IPv6: installing IPv4 chains only")
		}
	}
	return newManager(opts, log, fams), nil
}

func newManager(opts Options, log *slog.Logger, fams []family) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{opts: opts, log: log, fams: fams}
}

// IPv6 reports whether the manager covers IPv6 (false only when the kernel
// has no IPv6 stack).
func (m *Manager) IPv6() bool {
	return slices.ContainsFunc(m.fams, func(f family) bool { return f.v6 })
}

// Install installs the chains and their jumps for every family, replacing
// whatever a previous run left: it is idempotent and never leaves a
// duplicate jump. An existing chain is refilled by appending the new rules
// before deleting the old ones, so no packet ever meets an empty chain. A
// stale TOLLGATE-IN that the options no longer call for is removed.
//
// On error the rules may be partly installed; Remove cleans up.
func (m *Manager) Install() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.fams {
		if err := m.installFamily(f); err != nil {
			return err
		}
	}
	m.log.Info("netfilter chains installed", "backend", m.opts.Backend, "ipv6", m.IPv6(),
		"queue", m.opts.QueueNum, "fail_open", m.opts.FailOpen, "inbound", m.opts.Inbound,
		"intercept_loopback", m.opts.InterceptLoopback, "dns_queue", m.opts.DNSQueueNum != nil)
	return nil
}

func (m *Manager) installFamily(f family) error {
	for _, h := range hooks {
		rules := chainRules(m.opts, f.v6, h.chain)
		if rules == nil {
			if err := removeChain(f.t, h); err != nil {
				return fmt.Errorf("%s: remove unused chain %s: %w", f.name, h.chain, err)
			}
			continue
		}
		if err := fillChain(f.t, h.chain, rules); err != nil {
			return fmt.Errorf("%s: install chain %s: %w", f.name, h.chain, err)
		}
		if err := ensureJump(f.t, h); err != nil {
			return fmt.Errorf("%s: install jump from %s to %s: %w", f.name, h.builtin, h.chain, err)
		}
		m.log.Debug("chain installed", "family", f.name, "chain", h.chain, "rules", len(rules))
	}
	return nil
}

// Remove removes the jumps to every chain this package may have made and
// the chains themselves, in every family, whatever the options. It is
// idempotent: nothing to remove is not an error. It carries on past a
// failing family and returns all errors joined.
func (m *Manager) Remove() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, f := range m.fams {
		for _, h := range hooks {
			if err := removeChain(f.t, h); err != nil {
				errs = append(errs, fmt.Errorf("%s: remove chain %s: %w", f.name, h.chain, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.log.Info("netfilter chains removed", "backend", m.opts.Backend)
	return nil
}

// Installed reports whether every chain the options call for exists and is
// jumped to from its built-in chain, in every family.
func (m *Manager) Installed() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.fams {
		for _, h := range hooks {
			if chainRules(m.opts, f.v6, h.chain) == nil {
				continue
			}
			ok, err := f.t.ChainExists(table, h.chain)
			if err != nil {
				return false, fmt.Errorf("%s: look for chain %s: %w", f.name, h.chain, err)
			}
			if !ok {
				return false, nil
			}
			jumps, err := findJumps(f.t, h.builtin, h.chain)
			if err != nil {
				return false, fmt.Errorf("%s: look for jump from %s to %s: %w", f.name, h.builtin, h.chain, err)
			}
			if len(jumps) == 0 {
				return false, nil
			}
		}
	}
	return true, nil
}

// hook ties one of our chains to the built-in chain that jumps to it.
//
// The jump goes first in the built-in chain, so our rules see a packet
// before anyone else's in the filter table. A packet the daemon allows comes
// back with the accept mark and NF_REPEAT, returns from our chain and meets
// the rules after our jump, so other software's drops still apply (with a
// zero accept mark it is NF_ACCEPTed and leaves the hook); drops and
// rejects are final anyway.
type hook struct {
	builtin, chain string
}

var hooks = []hook{
	{builtin: "OUTPUT", chain: ChainOut},
	{builtin: "INPUT", chain: ChainIn},
}

// jumpSpec is the rule in the built-in chain that enters ours.
func jumpSpec(chain string) []string { return []string{"-j", chain} }

// chainRules returns the rules of one of our chains for the options and
// family, in order, or nil when the chain is not wanted.
func chainRules(o Options, v6 bool, chain string) [][]string {
	in := chain == ChainIn
	if in && !o.Inbound && o.DNSQueueNum == nil {
		return nil
	}
	mark := fmt.Sprintf("%#x/%#x", o.RejectMark, o.RejectMark)
	unreachable := "icmp-port-unreachable"
	if v6 {
		unreachable = "icmp6-port-unreachable"
	}
	// Packets the daemon marked and gave back with NF_REPEAT re-enter the
	// hook and stop here: TCP gets a reset, anything else an ICMP error.
	rules := [][]string{
		{"-p", "tcp", "-m", "mark", "--mark", mark, "-j", "REJECT", "--reject-with", "tcp-reset"},
		{"-m", "mark", "--mark", mark, "-j", "REJECT", "--reject-with", unreachable},
	}
	// Packets the daemon allowed come back with the accept bit: they go on
	// through the built-in chain after our jump.
	accept := o.AcceptMarkOut
	if in {
		accept = o.AcceptMarkIn
	}
	if accept != 0 {
		rules = append(rules, []string{"-m", "mark", "--mark", fmt.Sprintf("%#x/%#x", accept, accept), "-j", "RETURN"})
	}
	if in && o.DNSQueueNum != nil {
		// DNS answers answer a query: they are never NEW. Before the
		// loopback return because stub resolvers answer on loopback. A
		// NEW packet from port 53 is not an answer: it must neither skip
		// the inbound decision nor plant names in the cache (an off-path
		// host could otherwise name addresses for every process).
		dns := []string{"-p", "udp", "-m", "udp", "--sport", "53", "-m", "conntrack", "!", "--ctstate", "NEW"}
		dns = append(dns, "-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(*o.DNSQueueNum)), "--queue-bypass")
		rules = append(rules, dns)
	}
	if in && !o.Inbound {
		return rules
	}
	if !o.InterceptLoopback {
		iface := "-o"
		if in {
			iface = "-i"
		}
		rules = append(rules, []string{iface, "lo", "-j", "RETURN"})
	}
	if v6 {
		// Only echo requests are connections worth asking about. Neighbour
		// discovery (133-137), MLD and errors must never wait for a daemon,
		// whatever conntrack makes of them, or IPv6 breaks on the link.
		rules = append(rules, []string{"-p", "ipv6-icmp", "-m", "icmp6", "!", "--icmpv6-type", "128", "-j", "RETURN"})
	}
	target := []string{"-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(o.QueueNum))}
	if o.FailOpen {
		target = append(target, "--queue-bypass")
	}
	// A TCP SYN opens a connection whatever conntrack thinks: a SYN that
	// reuses the tuple of a connection conntrack still holds (a source port
	// reused right after a reset) can be seen as ESTABLISHED and would
	// otherwise pass undecided (the soak test caught one in 30,000).
	syn := append([]string{"-p", "tcp", "--syn"}, target...)
	queue := append([]string{"-m", "conntrack", "--ctstate", "NEW"}, target...)
	return append(rules, syn, queue)
}

// fillChain makes chain hold exactly rules. A new chain is filled before
// anything jumps to it; an existing one gets the new rules appended and
// then loses its old ones from the top, so at every moment a packet meets
// either the old rules or the new ones, never an empty chain.
func fillChain(t ruleTable, chain string, rules [][]string) error {
	exists, err := t.ChainExists(table, chain)
	if err != nil {
		return fmt.Errorf("look for chain: %w", err)
	}
	old := 0
	if exists {
		lines, err := t.List(table, chain)
		if err != nil {
			return fmt.Errorf("list stale chain: %w", err)
		}
		for _, l := range lines {
			if _, ok := parseRule(l); ok {
				old++
			}
		}
	} else if err := t.NewChain(table, chain); err != nil {
		return fmt.Errorf("create chain: %w", err)
	}
	for i, r := range rules {
		if err := t.Append(table, chain, r...); err != nil {
			return fmt.Errorf("append rule %d (%s): %w", i+1, strings.Join(r, " "), err)
		}
	}
	for range old {
		if err := t.DeleteById(table, chain, 1); err != nil {
			return fmt.Errorf("delete stale rule: %w", err)
		}
	}
	return nil
}

// ensureJump leaves exactly one jump from h.builtin to h.chain: a plain
// "-j CHAIN" at the top. A missing or misplaced jump gets a new one at the
// top before the old ones go, so the chain is never left unreferenced.
func ensureJump(t ruleTable, h hook) error {
	jumps, err := findJumps(t, h.builtin, h.chain)
	if err != nil {
		return err
	}
	if len(jumps) > 0 && jumps[0].id == 1 && jumps[0].plain {
		jumps = jumps[1:]
	} else {
		if err := t.Insert(table, h.builtin, 1, jumpSpec(h.chain)...); err != nil {
			return fmt.Errorf("insert jump: %w", err)
		}
		for i := range jumps {
			jumps[i].id++
		}
	}
	return deleteJumps(t, h.builtin, jumps)
}

// removeChain deletes every jump from h.builtin to h.chain, then flushes
// and deletes the chain. Absent jumps or chain are fine.
func removeChain(t ruleTable, h hook) error {
	jumps, err := findJumps(t, h.builtin, h.chain)
	if err != nil {
		return err
	}
	if err := deleteJumps(t, h.builtin, jumps); err != nil {
		return err
	}
	exists, err := t.ChainExists(table, h.chain)
	if err != nil {
		return fmt.Errorf("look for chain: %w", err)
	}
	if !exists {
		return nil
	}
	if err := t.ClearChain(table, h.chain); err != nil {
		return fmt.Errorf("flush chain: %w", err)
	}
	if err := t.DeleteChain(table, h.chain); err != nil {
		return fmt.Errorf("delete chain: %w", err)
	}
	return nil
}

// jump is a rule in a built-in chain that enters one of ours.
type jump struct {
	id    int  // 1-based position in the built-in chain
	plain bool // exactly "-j CHAIN", as we write it
}

// findJumps returns the rules in builtin that jump (or go) to chain, in
// ascending position.
func findJumps(t ruleTable, builtin, chain string) ([]jump, error) {
	lines, err := t.List(table, builtin)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", builtin, err)
	}
	var jumps []jump
	n := 0
	for _, l := range lines {
		r, ok := parseRule(l)
		if !ok {
			continue
		}
		n++
		if r.target == chain {
			jumps = append(jumps, jump{id: n, plain: r.plain})
		}
	}
	return jumps, nil
}

// deleteJumps deletes the given rules from the bottom up, so the positions
// stay valid.
func deleteJumps(t ruleTable, builtin string, jumps []jump) error {
	for _, j := range slices.Backward(jumps) {
		if err := t.DeleteById(table, builtin, j.id); err != nil {
			return fmt.Errorf("delete jump from %s at %d: %w", builtin, j.id, err)
		}
	}
	return nil
}

// rule is what the manager needs to know of one `iptables -S` line.
type rule struct {
	chain  string // the chain the rule is in
	target string // argument of -j or -g, "" if none
	plain  bool   // nothing but the target (and counters): a jump as we write it
}

// parseRule reads a rule line of `iptables -S` ("-A CHAIN ... -j TARGET
// ..."); policy and chain lines ("-P", "-N") and anything else are not
// rules. Double-quoted words (comments) are one word, so a comment cannot
// pose as a jump.
func parseRule(line string) (rule, bool) {
	f := splitWords(line)
	if len(f) < 2 || f[0] != "-A" {
		return rule{}, false
	}
	r := rule{chain: f[1]}
	other := false
	for i := 2; i < len(f); i++ {
		switch {
		case (f[i] == "-j" || f[i] == "-g" || f[i] == "--jump" || f[i] == "--goto") && i+1 < len(f) && r.target == "":
			r.target = f[i+1]
			i++
		case f[i] == "-c" && i+2 < len(f):
			i += 2 // packet and byte counters
		default:
			other = true
		}
	}
	r.plain = r.target != "" && !other
	return r, true
}

// splitWords splits an `iptables -S` line at spaces, keeping a
// double-quoted word (with \" and \\ escapes) as one word without its quotes.
func splitWords(line string) []string {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			w.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}
