package rulebook

import (
	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/shared"
)

// List returns every rule a may see, sorted by ID, in one slice: the
// tests' reference for Page and Count (the daemon pages).
func (b *Book) List(a Actor) []shared.Rule {
	return b.list(a, func(rules.View) bool { return true })
}
