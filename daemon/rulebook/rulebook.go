// Package rulebook keeps every rule the daemon knows, from all its sources:
// stored rules (forever and until, in the database), read-only system rules
// from rules.d, and rules that live only in memory (session and process
// lifetimes). It checks and applies changes, ends rules whose lifetime is
// over, and hands the matcher a fresh rule set after every change.
//
// It owns rule identity, ownership checks and per-user bounds. It must not
// decide connections (rules), parse files (rulesdir) or know how callers
// reach it (D-Bus): callers say who they are with an Actor.
package rulebook

import (
	"container/heap"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/shared"
)

// Errors callers branch on.
var (
	ErrNotFound     = errors.New("no such rule")
	ErrReadOnly     = errors.New("rule is read-only (from rules.d)")
	ErrNotPermitted = errors.New("not permitted")
	ErrLimit        = errors.New("too many rules")
	ErrInvalid      = errors.New("invalid rule")
)

// Store is the part of the database the book uses.
type Store interface {
	Rules() ([]shared.Rule, []store.BadRecord, error)
	PutRule(r shared.Rule) error
	PutRules(rs []shared.Rule) error
	DeleteRule(id string) error
}

// Actor is who asks for a change: a user (whose rules apply to their own
// processes) or an admin (who may also make and change system rules).
type Actor struct {
	UID   uint32
	Admin bool
}

// Options bound the book.
type Options struct {
	MaxPerUser int // rules one (non-admin) owner may have; 0 = 10,000
	Now        func() time.Time
	// FileRules are the read-only rules from rules.d to start with
	// (SetFileRules replaces them later); giving them here saves building
	// the first rule set twice.
	FileRules []shared.Rule
}

// Book holds the rules.
//
// Its storage is the rule set it hands the matcher (one compact copy of
// every rule): the file rules first, then the stored and in-memory ones.
// Every change builds the next set from the last one.
type Book struct {
	opts  Options
	log   *slog.Logger
	st    Store
	apply func(*rules.Set)

	mu     sync.Mutex
	set    *rules.Set
	nfiles int                  // set's first nfiles rules are the file rules
	timed  map[string]bool      // IDs of process and until rules: what Prune looks at
	hits   map[string]store.Hit // decisions counted (AddHits) since the rule went into the set
}

// New loads the stored rules and applies the first rule set.
func New(st Store, apply func(*rules.Set), log *slog.Logger, opts Options) (*Book, error) {
	if opts.MaxPerUser <= 0 {
		opts.MaxPerUser = 10_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Book{opts: opts, log: log, st: st, apply: apply, timed: make(map[string]bool), hits: make(map[string]store.Hit)}
	stored, bad, err := st.Rules()
	if err != nil {
		return nil, fmt.Errorf("read rules from database: %w", err)
	}
	for _, r := range bad {
		log.Error("unreadable rule in database (kept, not applied)", "key", r.Key, "err", r.Err)
	}
	for i := range stored {
		b.noteTimed(&stored[i])
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nfiles = len(opts.FileRules)
	b.set = rules.NewSet(opts.FileRules).Edit(nil, nil, stored)
	b.opts.FileRules = nil
	b.apply(b.set)
	return b, nil
}

// noteTimed notes whether Prune must watch r (b.mu held, or not yet shared).
func (b *Book) noteTimed(r *shared.Rule) {
	if r.Lifetime == shared.LifetimeProcess || r.Lifetime == shared.LifetimeUntil {
		b.timed[r.ID] = true
	} else {
		delete(b.timed, r.ID)
	}
}

// editLocked makes the next set: the rules (never file rules) whose IDs
// are in drop go, add come after the rest; then the matcher gets it. b.mu
// is held.
func (b *Book) editLocked(drop map[string]bool, add []shared.Rule) {
	var fn func(rules.View) bool
	if len(drop) > 0 {
		fn = func(v rules.View) bool { return v.Index() >= b.nfiles && drop[v.ID()] }
	}
	for id := range drop {
		delete(b.timed, id)
		delete(b.hits, id)
	}
	for i := range add {
		delete(b.hits, add[i].ID)
		b.noteTimed(&add[i])
	}
	b.set = b.set.Edit(fn, nil, add)
	b.apply(b.set)
}

// SetFileRules replaces the read-only rules from rules.d.
func (b *Book) SetFileRules(rs []shared.Rule) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.nfiles
	b.set = b.set.Edit(func(v rules.View) bool { return v.Index() < n }, rs, nil)
	b.nfiles = len(rs)
	b.apply(b.set)
}

// stored reports whether a rule of this lifetime lives in the database.
func stored(l shared.Lifetime) bool { return l == shared.LifetimeForever || l == shared.LifetimeUntil }

// Len returns how many rules there are, file rules included.
func (b *Book) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set.Len()
}

// Get returns a rule by ID.
func (b *Book) Get(id string) (shared.Rule, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.getLocked(id)
}

func (b *Book) getLocked(id string) (shared.Rule, bool) {
	i, ok := b.set.Lookup(id)
	if !ok {
		return shared.Rule{}, false
	}
	return b.atLocked(i), true
}

// atLocked returns the rule at position i of the set, with the hits
// counted since it went in.
func (b *Book) atLocked(i int) shared.Rule {
	r := b.set.At(i)
	if h, ok := b.hits[r.ID]; ok && i >= b.nfiles {
		r.Hits += h.Count
		if h.Last.After(r.LastHit) {
			r.LastHit = h.Last
		}
	}
	return r
}

// visible says whether a may see a rule of owner.
func visible(a Actor, owner uint32) bool {
	return a.Admin || owner == a.UID || owner == shared.OwnerSystem
}

// Count returns how many rules a user may see (their own and the system's;
// for an admin, every rule), without copying them.
func (b *Book) Count(a Actor) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for i := range b.set.Len() {
		if visible(a, b.set.View(i).Owner()) {
			n++
		}
	}
	return n
}

// Page returns, sorted by ID, up to limit (at least 1) of the rules a may
// see whose IDs sort after after ("": from the first), and whether more
// follow. Paging through a large book costs O(n log limit) a page and
// copies only the page's rules.
func (b *Book) Page(a Actor, after string, limit int) ([]shared.Rule, bool) {
	limit = max(limit, 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	// The limit smallest IDs after `after`, in a max-heap by ID (the root
	// is the largest kept, the first to go when a smaller one comes).
	h := &idHeap{set: b.set}
	more := false
	for i := range b.set.Len() {
		v := b.set.View(i)
		if !visible(a, v.Owner()) || v.ID() <= after {
			continue
		}
		switch {
		case len(h.idx) < limit:
			heap.Push(h, int32(i))
		case v.ID() < b.set.View(int(h.idx[0])).ID():
			h.idx[0] = int32(i)
			heap.Fix(h, 0)
			more = true
		default:
			more = true
		}
	}
	slices.SortFunc(h.idx, func(x, y int32) int { return strings.Compare(b.set.View(int(x)).ID(), b.set.View(int(y)).ID()) })
	out := make([]shared.Rule, len(h.idx))
	for k, i := range h.idx {
		out[k] = b.atLocked(int(i))
	}
	return out, more
}

// idHeap is a max-heap of set positions ordered by rule ID.
type idHeap struct {
	set *rules.Set
	idx []int32
}

func (h *idHeap) Len() int { return len(h.idx) }
func (h *idHeap) Less(i, j int) bool {
	return h.set.View(int(h.idx[i])).ID() > h.set.View(int(h.idx[j])).ID()
}
func (h *idHeap) Swap(i, j int) { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *idHeap) Push(x any)    { h.idx = append(h.idx, x.(int32)) }
func (h *idHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}

func (b *Book) list(a Actor, want func(rules.View) bool) []shared.Rule {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []shared.Rule
	for i := range b.set.Len() {
		if v := b.set.View(i); visible(a, v.Owner()) && want(v) {
			out = append(out, b.atLocked(i))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// prepare checks a rule an actor wants to make and fills what the daemon
// keeps. Ownership: a user's rule is theirs; only an admin makes system
// rules or rules for someone else.
func (b *Book) prepare(a Actor, r shared.Rule) (shared.Rule, error) {
	r.Normalize()
	if r.Lifetime == shared.LifetimeOnce {
		return r, fmt.Errorf("%w: a once rule is never kept; answer the pending connection instead", ErrInvalid)
	}
	if !a.Admin {
		if r.Owner != a.UID && r.Owner != shared.OwnerSystem {
			return r, fmt.Errorf("%w: a rule for uid %d needs admin rights", ErrNotPermitted, r.Owner)
		}
		r.Owner = a.UID // a user's rule applies to that user's processes only
	}
	r.ReadOnly = false
	r.Source = "store"
	if !stored(r.Lifetime) {
		r.Source = string(r.Lifetime)
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return r, nil
}

// countLocked returns how many rules owner has (file rules aside).
func (b *Book) countLocked(owner uint32) int {
	n := 0
	for i := b.nfiles; i < b.set.Len(); i++ {
		if b.set.View(i).Owner() == owner {
			n++
		}
	}
	return n
}

// Add makes a new rule and returns it as kept (with its ID).
func (b *Book) Add(a Actor, r shared.Rule) (shared.Rule, error) {
	r, err := b.prepare(a, r)
	if err != nil {
		return r, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !a.Admin && b.countLocked(r.Owner) >= b.opts.MaxPerUser {
		return r, fmt.Errorf("%w: uid %d has %d rules already", ErrLimit, r.Owner, b.opts.MaxPerUser)
	}
	if r.ID == "" {
		r.ID = newID()
	} else if _, exists := b.getLocked(r.ID); exists {
		return r, fmt.Errorf("%w: id %q is taken", ErrInvalid, r.ID)
	}
	if err := checkID(r.ID); err != nil {
		return r, err
	}
	now := b.opts.Now().UTC()
	r.Created, r.Updated, r.Hits, r.LastHit = now, now, 0, time.Time{}
	if err := b.putLocked(r, false); err != nil {
		return r, err
	}
	return r, nil
}

// putLocked keeps r: in the database when its lifetime says so; replace
// says that it takes the place of the rule with its ID.
func (b *Book) putLocked(r shared.Rule, replace bool) error {
	if stored(r.Lifetime) {
		if err := b.st.PutRule(r); err != nil {
			return fmt.Errorf("store rule: %w", err)
		}
	}
	var drop map[string]bool
	if replace {
		drop = map[string]bool{r.ID: true}
	}
	b.editLocked(drop, []shared.Rule{r})
	return nil
}

// editableLocked returns rule id if a may change it.
func (b *Book) editableLocked(a Actor, id string) (shared.Rule, error) {
	old, ok := b.getLocked(id)
	if !ok {
		return old, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if old.ReadOnly {
		return old, fmt.Errorf("%w: %q", ErrReadOnly, id)
	}
	if !a.Admin && old.Owner != a.UID {
		return old, fmt.Errorf("%w: rule %q belongs to uid %d", ErrNotPermitted, id, old.Owner)
	}
	return old, nil
}

// Update replaces rule id with r, keeping its identity and history.
func (b *Book) Update(a Actor, id string, r shared.Rule) (shared.Rule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old, err := b.editableLocked(a, id)
	if err != nil {
		return old, err
	}
	if !a.Admin {
		r.Owner = old.Owner
	}
	r.ID = id
	// What binds a lifetime (the process, the agent's session) is the
	// daemon's bookkeeping, kept from the old rule before validation: a
	// client cannot set it, and a process rule stays valid when a client
	// only renames or disables it.
	r.PID, r.PIDStart, r.Session = old.PID, old.PIDStart, old.Session
	r, err = b.prepare(a, r)
	if err != nil {
		return r, err
	}
	r.Created, r.Hits, r.LastHit = old.Created, old.Hits, old.LastHit
	r.Updated = b.opts.Now().UTC()
	if stored(old.Lifetime) && !stored(r.Lifetime) {
		if err := b.st.DeleteRule(id); err != nil {
			return r, fmt.Errorf("unstore rule: %w", err)
		}
	}
	if err := b.putLocked(r, true); err != nil {
		return r, err
	}
	return r, nil
}

// Delete removes rule id.
func (b *Book) Delete(a Actor, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old, err := b.editableLocked(a, id)
	if err != nil {
		return err
	}
	if stored(old.Lifetime) {
		if err := b.st.DeleteRule(id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete stored rule: %w", err)
		}
	}
	b.editLocked(map[string]bool{id: true}, nil)
	return nil
}

// Export returns the stored and file rules an actor may see, for backup.
func (b *Book) Export(a Actor) []shared.Rule {
	return b.list(a, func(v rules.View) bool { return stored(v.Lifetime()) })
}

// Import adds or replaces rules, all or nothing, and is idempotent: a rule
// with an ID replaces the rule of that ID; one without gets an ID derived
// from its content, so importing the same file twice changes nothing. It
// returns how many rules changed.
func (b *Book) Import(a Actor, rs []shared.Rule) (int, error) {
	prepared := make([]shared.Rule, 0, len(rs))
	for i, r := range rs {
		if !stored(r.Lifetime) && r.Lifetime != "" {
			return 0, fmt.Errorf("%w: rule %d: lifetime %s cannot be imported", ErrInvalid, i+1, r.Lifetime)
		}
		p, err := b.prepare(a, r)
		if err != nil {
			return 0, fmt.Errorf("rule %d: %w", i+1, err)
		}
		if p.ID == "" {
			p.ID = contentID(p)
		}
		if err := checkID(p.ID); err != nil {
			return 0, fmt.Errorf("rule %d: %w", i+1, err)
		}
		prepared = append(prepared, p)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.opts.Now().UTC()
	var changed []shared.Rule
	for _, p := range prepared {
		if old, ok := b.getLocked(p.ID); ok {
			if old.ReadOnly {
				return 0, fmt.Errorf("%w: %q", ErrReadOnly, p.ID)
			}
			if !a.Admin && old.Owner != a.UID {
				return 0, fmt.Errorf("%w: rule %q belongs to uid %d", ErrNotPermitted, p.ID, old.Owner)
			}
			if sameContent(old, p) {
				continue
			}
			p.Created, p.Hits, p.LastHit = old.Created, old.Hits, old.LastHit
		} else {
			p.Created = now
		}
		p.Updated = now
		changed = append(changed, p)
	}
	if !a.Admin && b.countLocked(a.UID)+len(changed) > b.opts.MaxPerUser {
		return 0, fmt.Errorf("%w: uid %d would have more than %d rules", ErrLimit, a.UID, b.opts.MaxPerUser)
	}
	if len(changed) == 0 {
		return 0, nil
	}
	if err := b.st.PutRules(changed); err != nil {
		return 0, fmt.Errorf("store rules: %w", err)
	}
	drop := make(map[string]bool, len(changed))
	for _, p := range changed {
		drop[p.ID] = true
	}
	b.editLocked(drop, changed)
	return len(changed), nil
}

// EndSession removes the session rules made by an agent that went away.
func (b *Book) EndSession(session string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	drop := map[string]bool{}
	for i := b.nfiles; i < b.set.Len(); i++ {
		if v := b.set.View(i); v.Lifetime() == shared.LifetimeSession && v.Session() == session {
			drop[v.ID()] = true
		}
	}
	if len(drop) > 0 {
		b.editLocked(drop, nil)
	}
	return len(drop)
}

// Prune removes process rules whose process is gone and until rules whose
// time has come; alive says whether a process (pid, start) still runs. It
// asks alive without holding the book's lock: it reads /proc.
func (b *Book) Prune(alive func(pid int, start uint64) bool) int {
	now := b.opts.Now()
	type proc struct {
		pid   int
		start uint64
	}
	b.mu.Lock()
	if len(b.timed) == 0 {
		b.mu.Unlock()
		return 0 // nothing can end: no walk over every rule once a second
	}
	var procs []proc
	for id := range b.timed {
		if r, ok := b.getLocked(id); ok && r.Lifetime == shared.LifetimeProcess {
			procs = append(procs, proc{r.PID, r.PIDStart})
		}
	}
	b.mu.Unlock()
	dead := make(map[proc]bool)
	for _, p := range procs {
		if !alive(p.pid, p.start) {
			dead[p] = true
		}
	}
	var expired []string
	b.mu.Lock()
	drop := map[string]bool{}
	for id := range b.timed {
		r, ok := b.getLocked(id)
		if !ok {
			continue
		}
		switch r.Lifetime {
		case shared.LifetimeProcess:
			if dead[proc{r.PID, r.PIDStart}] {
				drop[id] = true
			}
		case shared.LifetimeUntil:
			if !r.Until.After(now) {
				drop[id] = true
				expired = append(expired, id)
			}
		}
	}
	if len(drop) > 0 {
		b.editLocked(drop, nil)
	}
	b.mu.Unlock()
	for _, id := range expired {
		if err := b.st.DeleteRule(id); err != nil && !errors.Is(err, store.ErrNotFound) {
			b.log.Error("delete expired rule", "id", id, "err", err)
		}
	}
	return len(drop)
}

// AddHits adds decision counts to the in-memory rules (the store keeps its
// own through UpdateHits). They are kept beside the rule set, which is not
// rebuilt for them.
func (b *Book) AddHits(h map[string]store.Hit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, hit := range h {
		if i, ok := b.set.Lookup(id); !ok || i < b.nfiles {
			continue
		}
		old := b.hits[id]
		old.Count += hit.Count
		if hit.Last.After(old.Last) {
			old.Last = hit.Last
		}
		b.hits[id] = old
	}
}

// checkID refuses IDs of the form rules.d files use ("file:name"), so a
// stored rule can never share an ID with a file rule loaded later.
func checkID(id string) error {
	if strings.Contains(id, ":") {
		return fmt.Errorf("%w: id %q: ids with \":\" are reserved for rules.d files", ErrInvalid, id)
	}
	return nil
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// contentID names a rule by what it says, so the same rule imported twice
// is one rule.
func contentID(r shared.Rule) string {
	f := r.Fields()
	for _, k := range []string{"id", "created", "updated", "hits", "last_hit", "source", "read_only"} {
		delete(f, k)
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		v, _ := json.Marshal(f[k])
		fmt.Fprintf(h, "%s=%s\n", k, v)
	}
	return "i-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// sameContent reports whether two rules say the same, bookkeeping aside.
func sameContent(a, b shared.Rule) bool {
	return contentID(a) == contentID(b) && a.ID == b.ID
}
