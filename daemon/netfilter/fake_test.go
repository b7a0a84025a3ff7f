package netfilter

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// fakeTable is an in-memory filter table of one family that behaves like
// iptables where the manager depends on it: chains must exist before they
// are used, jumps must name an existing chain, a chain must be empty and
// unreferenced before it is deleted, positions must be in range.
type fakeTable struct {
	rules map[string][]string // chain → rules, each the rulespec joined by spaces
	user  []string            // user chains in creation order

	// fail, when set, is asked before every operation; an error it returns
	// is returned by the operation, which then changes nothing.
	fail func(op, chain string) error
	// changed, when set, is called after every change of the rule set.
	changed func(*fakeTable)
}

var fakeBuiltins = []string{"INPUT", "FORWARD", "OUTPUT"}

var fakeTargets = []string{"ACCEPT", "DROP", "RETURN", "REJECT", "NFQUEUE", "LOG"}

var errFakeIptables = errors.New("fake iptables")

func newFakeTable() *fakeTable {
	f := &fakeTable{rules: map[string][]string{}}
	for _, c := range fakeBuiltins {
		f.rules[c] = nil
	}
	return f
}

func (f *fakeTable) check(op, tbl, chain string) error {
	if tbl != "filter" {
		return fmt.Errorf("%w: %s: table %q does not exist", errFakeIptables, op, tbl)
	}
	if f.fail != nil {
		return f.fail(op, chain)
	}
	return nil
}

func (f *fakeTable) has(chain string) bool {
	_, ok := f.rules[chain]
	return ok
}

func (f *fakeTable) mustHave(op, chain string) error {
	if !f.has(chain) {
		return fmt.Errorf("%w: %s %s: No chain/target/match by that name", errFakeIptables, op, chain)
	}
	return nil
}

func (f *fakeTable) note() {
	if f.changed != nil {
		f.changed(f)
	}
}

func (f *fakeTable) validSpec(op string, spec []string) error {
	for i, w := range spec {
		if (w == "-j" || w == "-g") && i+1 < len(spec) {
			t := spec[i+1]
			if !slices.Contains(fakeTargets, t) && !slices.Contains(f.user, t) {
				return fmt.Errorf("%w: %s: Couldn't load target `%s'", errFakeIptables, op, t)
			}
		}
	}
	if len(spec) == 0 {
		return fmt.Errorf("%w: %s: empty rule", errFakeIptables, op)
	}
	return nil
}

func (f *fakeTable) ChainExists(tbl, chain string) (bool, error) {
	if err := f.check("ChainExists", tbl, chain); err != nil {
		return false, err
	}
	return f.has(chain), nil
}

func (f *fakeTable) NewChain(tbl, chain string) error {
	if err := f.check("NewChain", tbl, chain); err != nil {
		return err
	}
	if f.has(chain) {
		return fmt.Errorf("%w: NewChain %s: Chain already exists", errFakeIptables, chain)
	}
	f.rules[chain] = nil
	f.user = append(f.user, chain)
	f.note()
	return nil
}

func (f *fakeTable) ClearChain(tbl, chain string) error {
	if err := f.check("ClearChain", tbl, chain); err != nil {
		return err
	}
	if !f.has(chain) {
		f.user = append(f.user, chain)
	}
	f.rules[chain] = nil
	f.note()
	return nil
}

func (f *fakeTable) DeleteChain(tbl, chain string) error {
	if err := f.check("DeleteChain", tbl, chain); err != nil {
		return err
	}
	if err := f.mustHave("DeleteChain", chain); err != nil {
		return err
	}
	if slices.Contains(fakeBuiltins, chain) {
		return fmt.Errorf("%w: DeleteChain %s: built-in chain", errFakeIptables, chain)
	}
	if len(f.rules[chain]) > 0 {
		return fmt.Errorf("%w: DeleteChain %s: Directory not empty", errFakeIptables, chain)
	}
	for c, rs := range f.rules {
		for _, r := range rs {
			if slices.Contains(strings.Fields(r), chain) {
				return fmt.Errorf("%w: DeleteChain %s: Too many links (referenced from %s)", errFakeIptables, chain, c)
			}
		}
	}
	delete(f.rules, chain)
	f.user = slices.DeleteFunc(f.user, func(c string) bool { return c == chain })
	f.note()
	return nil
}

// List prints like `iptables -S CHAIN`.
func (f *fakeTable) List(tbl, chain string) ([]string, error) {
	if err := f.check("List", tbl, chain); err != nil {
		return nil, err
	}
	if err := f.mustHave("List", chain); err != nil {
		return nil, err
	}
	var out []string
	if slices.Contains(fakeBuiltins, chain) {
		out = append(out, "-P "+chain+" ACCEPT")
	} else {
		out = append(out, "-N "+chain)
	}
	for _, r := range f.rules[chain] {
		out = append(out, "-A "+chain+" "+r)
	}
	return out, nil
}

func (f *fakeTable) Append(tbl, chain string, spec ...string) error {
	if err := f.check("Append", tbl, chain); err != nil {
		return err
	}
	if err := f.mustHave("Append", chain); err != nil {
		return err
	}
	if err := f.validSpec("Append", spec); err != nil {
		return err
	}
	f.rules[chain] = append(f.rules[chain], strings.Join(spec, " "))
	f.note()
	return nil
}

func (f *fakeTable) Insert(tbl, chain string, pos int, spec ...string) error {
	if err := f.check("Insert", tbl, chain); err != nil {
		return err
	}
	if err := f.mustHave("Insert", chain); err != nil {
		return err
	}
	if pos < 1 || pos > len(f.rules[chain])+1 {
		return fmt.Errorf("%w: Insert %s %d: Index of insertion too big", errFakeIptables, chain, pos)
	}
	if err := f.validSpec("Insert", spec); err != nil {
		return err
	}
	f.rules[chain] = slices.Insert(f.rules[chain], pos-1, strings.Join(spec, " "))
	f.note()
	return nil
}

func (f *fakeTable) DeleteById(tbl, chain string, id int) error {
	if err := f.check("DeleteById", tbl, chain); err != nil {
		return err
	}
	if err := f.mustHave("DeleteById", chain); err != nil {
		return err
	}
	if id < 1 || id > len(f.rules[chain]) {
		return fmt.Errorf("%w: DeleteById %s %d: Index of deletion too big", errFakeIptables, chain, id)
	}
	f.rules[chain] = slices.Delete(f.rules[chain], id-1, id)
	f.note()
	return nil
}

// dump prints the whole table like `iptables -S`: policies, user chains,
// then every chain's rules.
func (f *fakeTable) dump() string {
	var b strings.Builder
	for _, c := range fakeBuiltins {
		fmt.Fprintf(&b, "-P %s ACCEPT\n", c)
	}
	for _, c := range f.user {
		fmt.Fprintf(&b, "-N %s\n", c)
	}
	for _, c := range append(slices.Clone(fakeBuiltins), f.user...) {
		for _, r := range f.rules[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, r)
		}
	}
	return b.String()
}
