package service

import (
	"slices"
	"sync"
)

// agent is a registered agent: a bus client that answers pending
// connections for its user (or, for an admin, for system users too).
type agent struct {
	name  string // unique bus name
	uid   uint32
	admin bool
}

// agents is the registry of agents; it tells the pending broker whom to
// ask.
type agents struct {
	mu     sync.Mutex
	byName map[string]agent
}

func newAgents() *agents { return &agents{byName: make(map[string]agent)} }

// systemUIDs below this are system users: their connections go to admin
// agents.
const firstUserUID = 1000

// For returns the agents entitled to answer connections of uid: that
// user's agents; for system users (and unknown uids), admin agents.
func (a *agents) For(uid int64) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ag := range a.byName {
		own := uid >= 0 && int64(ag.uid) == uid
		if own || (ag.admin && (uid < firstUserUID)) {
			out = append(out, ag.name)
		}
	}
	slices.Sort(out)
	return out
}

func (a *agents) add(ag agent) {
	a.mu.Lock()
	a.byName[ag.name] = ag
	a.mu.Unlock()
}

// remove forgets an agent and reports whether it was registered.
func (a *agents) remove(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.byName[name]
	delete(a.byName, name)
	return ok
}

func (a *agents) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.byName)
}
