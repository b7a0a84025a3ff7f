// Package rulesdir loads the read-only system rules that administrators
// keep as TOML files in a directory (/etc/tollgate/rules.d), for
// configuration management.
//
// It owns the file format: every *.toml file, in name order, holds
// [[rule]] tables whose keys are exactly the shared field names:
//
//	[[rule]]
//	name   = "ssh-out"
//	action = "allow"
//	exe    = "/usr/bin/ssh"
//	port   = 22
//
//	[[rule]]
//	name   = "trackers"
//	action = "reject"
//	host   = "*.tracker.example"
//
// Rules load as system rules (owner root), read-only, with Source
// "rules.d/<file>", lifetime forever unless they say until (once, session
// and process make no sense in a file), enabled unless enabled = false,
// and the id "<file without .toml>:<name>" (or ":<index>", counting from 1,
// for a rule without a name) unless they give one. Load puts an id given
// without ":" under its file too ("<file>:<id>"): ids with ":" are never
// a stored rule's, so a file rule cannot take a stored rule's id (Parse,
// which import uses, keeps ids as given). A TOML local date-time
// (no offset) is read in the machine's time zone.
//
// A bad file or rule is reported (file, rule index and name, field) and
// skipped; everything else still loads. The package only reads: it must not
// write files, touch the store, or decide connections.
package rulesdir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"

	"github.com/tollgate-fw/tollgate/shared"
)

// MaxFileSize bounds one rules file.
const MaxFileSize = 16 << 20

// ErrDuplicateID is wrapped by the error of a rule whose id an earlier rule
// (in the same file or an earlier one) already has.
var ErrDuplicateID = errors.New("duplicate rule id")

// Error is a problem with one rules file or one rule in it. Use errors.As
// to reach a *shared.FieldError in Err.
type Error struct {
	File  string // the file: the name given to Parse, or the path Load read
	Index int    // the rule's position in the file, from 1; 0 for the file as a whole
	Name  string // the rule's name, when it has one
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Index > 0 {
		b.WriteString(": rule ")
		b.WriteString(strconv.Itoa(e.Index))
		if e.Name != "" {
			b.WriteString(" ")
			b.WriteString(strconv.Quote(e.Name))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads every *.toml file of dir in name order (other files, hidden
// files and directories are ignored) and returns the rules that are valid,
// with one error per bad file or rule. A missing dir is not an error: it
// holds no rules. A directory or file that users other than root may write
// is refused: it would let them add system rules. A rule whose id an earlier
// file already used is an error and does not load.
func Load(dir string) (rules []shared.Rule, errs []error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		if why := trusted(fi); why != "" {
			return nil, []error{fmt.Errorf("rules directory %s refused: it is %s", dir, why)}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{fmt.Errorf("read rules directory %s: %w", dir, err)}
	}
	seen := map[string]string{} // id -> path of the file that has it
	for _, ent := range entries {
		name := ent.Name()
		if !strings.HasSuffix(name, ".toml") || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := readFile(path)
		if errors.Is(err, errNotRegular) {
			continue
		}
		if err != nil {
			errs = append(errs, &Error{File: path, Err: err})
			continue
		}
		rs, positions, fileErrs := parse(path, data)
		errs = append(errs, fileErrs...)
		prefix := strings.TrimSuffix(name, ".toml") + ":"
		for i, r := range rs {
			if !strings.Contains(r.ID, ":") {
				r.ID = prefix + r.ID
			}
			if other, dup := seen[r.ID]; dup {
				errs = append(errs, &Error{File: path, Index: positions[i], Name: r.Name,
					Err: fmt.Errorf("%w %q: %s has it already", ErrDuplicateID, r.ID, other)})
				continue
			}
			seen[r.ID] = path
			rules = append(rules, r)
		}
	}
	return rules, errs
}

var errNotRegular = errors.New("not a regular file")

// trusted says why a rules file or directory cannot be trusted to hold
// system rules, or "" when it can: it must belong to root (or to the user
// the daemon runs as) and be writable by nobody else.
func trusted(fi os.FileInfo) string {
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("writable by users other than its owner (mode %04o)", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Sprintf("owned by uid %d, not root", st.Uid)
	}
	return ""
}

// readFile reads a rules file, following symlinks, refusing files others
// than root could have written, and oversized files.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errNotRegular
	}
	if why := trusted(fi); why != "" {
		return nil, fmt.Errorf("refused: the file is %s", why)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	return data, nil
}

// document is the shape of a rules file.
type document struct {
	Rule []map[string]any `toml:"rule"`
}

// Parse reads one rules file named name (its base name makes the ids and
// Source; errors name it as given) and returns its valid rules and one error per
// problem. Duplicate ids within the file are caught here; across files,
// by Load.
func Parse(name string, data []byte) (rules []shared.Rule, errs []error) {
	rules, _, errs = parse(name, data)
	return rules, errs
}

// parse is Parse that also returns each rule's position in the file.
func parse(name string, data []byte) (rules []shared.Rule, positions []int, errs []error) {
	file := filepath.Base(name)
	if len(data) > MaxFileSize {
		return nil, nil, []error{&Error{File: name, Err: fmt.Errorf("larger than %d bytes", MaxFileSize)}}
	}
	var doc document
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return nil, nil, []error{&Error{File: name, Err: fmt.Errorf("parse TOML: %w", err)}}
	}
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == "rule" {
			continue // inside a rule: RuleFromFields names it
		}
		errs = append(errs, &Error{File: name, Err: fmt.Errorf("unknown key %q: rules go in [[rule]] tables", k.String())})
	}
	prefix := strings.TrimSuffix(file, ".toml")
	seen := map[string]int{}
	for i, fields := range doc.Rule {
		index := i + 1
		ruleName, _ := fields["name"].(string)
		r, err := fileRule(fields)
		if err != nil {
			errs = append(errs, &Error{File: name, Index: index, Name: ruleName, Err: err})
			continue
		}
		if r.ID == "" {
			if r.Name != "" {
				r.ID = prefix + ":" + r.Name
			} else {
				r.ID = prefix + ":" + strconv.Itoa(index)
			}
		}
		r.Source = "rules.d/" + file
		r.Normalize()
		if err := r.Validate(); err != nil {
			errs = append(errs, &Error{File: name, Index: index, Name: ruleName, Err: err})
			continue
		}
		if first, dup := seen[r.ID]; dup {
			errs = append(errs, &Error{File: name, Index: index, Name: ruleName,
				Err: fmt.Errorf("%w %q: rule %d has it already", ErrDuplicateID, r.ID, first)})
			continue
		}
		seen[r.ID] = index
		rules = append(rules, r)
		positions = append(positions, index)
	}
	return rules, positions, errs
}

// fileRule decodes one [[rule]] table and applies what a file may and may
// not say.
func fileRule(fields map[string]any) (shared.Rule, error) {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if shared.IsBookkeepingField(k) {
			return shared.Rule{}, &shared.FieldError{Field: k, Msg: "kept by the daemon, not allowed in a rules file"}
		}
	}
	r, err := shared.RuleFromFields(fields)
	if err != nil {
		return shared.Rule{}, err
	}
	switch r.Lifetime {
	case shared.LifetimeOnce, shared.LifetimeSession, shared.LifetimeProcess:
		return shared.Rule{}, &shared.FieldError{Field: "lifetime",
			Msg: fmt.Sprintf("%s makes no sense in a rules file (use forever or until)", r.Lifetime)}
	}
	if r.Owner != shared.OwnerSystem {
		return shared.Rule{}, &shared.FieldError{Field: "owner", Msg: "rules files hold system rules: owner must be root"}
	}
	r.ReadOnly = true
	return r, nil
}
