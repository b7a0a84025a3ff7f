// Package desktop finds the freedesktop.org desktop entry (.desktop file) and
// icon of an application, so the tray can show "Firefox" with its icon instead
// of a bare executable path.
//
// It owns the parser of .desktop files (Desktop Entry Specification 1.5:
// groups, keys, localized keys, string escapes, Exec quoting and field codes)
// and the Index that maps executables, Flatpak app ids and snap names to
// entries, resolving icons in the hicolor theme and pixmaps.
//
// It reads files written by other people, so every size is bounded and bad
// input is an error, never a panic. It must not import Fyne, D-Bus or daemon
// code, must not write anything, and must never run the programs it reads
// about (TryExec is checked with stat, not executed).
package desktop

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds on what Parse accepts. Real desktop files are a few kilobytes even
// with dozens of translations.
const (
	MaxFileSize = 256 << 10 // bytes
	MaxLines    = 8192
)

// Errors callers can branch on (wrapped with the line number or detail).
var (
	ErrTooLarge   = errors.New("desktop entry too large")
	ErrSyntax     = errors.New("desktop entry syntax error")
	ErrNoEntry    = errors.New("no [Desktop Entry] group")
	ErrInvalid    = errors.New("invalid desktop entry")
	ErrExecSyntax = errors.New("invalid Exec value")
)

const entryGroup = "Desktop Entry"

// Entry is the [Desktop Entry] group of a .desktop file, values unescaped.
// Other groups (Desktop Action …) are checked for syntax and otherwise ignored.
type Entry struct {
	Type            string // Application, Link, Directory
	Name            string // unlocalized
	GenericName     string
	Comment         string
	Icon            string // an absolute path or an icon name
	Exec            string // the Exec value after string unescaping (not yet split)
	TryExec         string
	Path            string
	StartupWMClass  string
	Categories      []string
	NoDisplay       bool
	Hidden          bool
	Terminal        bool
	DBusActivatable bool

	keys      map[string]string            // every key of the group, raw (still escaped)
	localized map[string]map[string]string // key → locale → raw value, for Name, GenericName, Comment
}

// Get returns the unescaped string value of a key of the [Desktop Entry]
// group (for example "X-Flatpak"), unlocalized.
func (e *Entry) Get(key string) (string, bool) {
	v, ok := e.keys[key]
	if !ok {
		return "", false
	}
	return unescape(v), true
}

// LocalizedName returns Name for the given POSIX locale (for example
// "de_DE.UTF-8"), following the spec's matching order, or Name.
func (e *Entry) LocalizedName(locale string) string {
	return e.localize("Name", e.Name, locale)
}

// LocalizedComment is LocalizedName for Comment.
func (e *Entry) LocalizedComment(locale string) string {
	return e.localize("Comment", e.Comment, locale)
}

// LocalizedGenericName is LocalizedName for GenericName.
func (e *Entry) LocalizedGenericName(locale string) string {
	return e.localize("GenericName", e.GenericName, locale)
}

func (e *Entry) localize(key, def, locale string) string {
	m := e.localized[key]
	if len(m) == 0 {
		return def
	}
	for _, k := range localeKeys(locale) {
		if v, ok := m[k]; ok {
			return unescape(v)
		}
	}
	return def
}

// Argv splits Exec into the program and its arguments, field codes removed
// (see ParseExec).
func (e *Entry) Argv() ([]string, error) {
	return ParseExec(e.Exec)
}

// localeKeys lists the keys to try for lang_COUNTRY.ENCODING@MODIFIER, in the
// spec's order: lang_COUNTRY@MODIFIER, lang_COUNTRY, lang@MODIFIER, lang.
func localeKeys(locale string) []string {
	if locale == "" || locale == "C" || locale == "POSIX" {
		return nil
	}
	lang, mod := locale, ""
	if i := strings.IndexByte(lang, '@'); i >= 0 {
		lang, mod = lang[:i], lang[i+1:]
	}
	if i := strings.IndexByte(lang, '.'); i >= 0 {
		lang = lang[:i] // the encoding is ignored
	}
	country := ""
	if i := strings.IndexByte(lang, '_'); i >= 0 {
		lang, country = lang[:i], lang[i+1:]
	}
	if lang == "" {
		return nil
	}
	var keys []string
	if country != "" && mod != "" {
		keys = append(keys, lang+"_"+country+"@"+mod)
	}
	if country != "" {
		keys = append(keys, lang+"_"+country)
	}
	if mod != "" {
		keys = append(keys, lang+"@"+mod)
	}
	return append(keys, lang)
}

// Parse reads a .desktop file. It returns ErrTooLarge past MaxFileSize or
// MaxLines, ErrSyntax for a line that is neither a comment, a group header nor
// a key=value pair (or a duplicate group, a key outside any group, invalid
// UTF-8), ErrNoEntry without a [Desktop Entry] group, and ErrInvalid when Type
// or Name is missing. A repeated key keeps its first value.
func Parse(data []byte) (*Entry, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, len(data), MaxFileSize)
	}
	if bytes.Count(data, []byte{'\n'}) >= MaxLines {
		return nil, fmt.Errorf("%w: more than %d lines", ErrTooLarge, MaxLines)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrSyntax)
	}
	e := &Entry{keys: map[string]string{}, localized: map[string]map[string]string{}}
	groups := map[string]bool{}
	group := ""
	seenEntry := false
	text := string(data)
	for n := 1; text != ""; n++ {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		line = strings.TrimRight(line, "\r")
		trimmed := strings.TrimLeft(line, " \t")
		switch {
		case trimmed == "" || trimmed[0] == '#':
			continue
		case trimmed[0] == '[':
			name, err := groupName(strings.TrimRight(trimmed, " \t"))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if groups[name] {
				return nil, fmt.Errorf("%w: line %d: duplicate group [%s]", ErrSyntax, n, name)
			}
			groups[name] = true
			group = name
			if name == entryGroup {
				seenEntry = true
			}
			continue
		}
		key, value, ok := strings.Cut(trimmed, "=")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: not a comment, group or key=value", ErrSyntax, n)
		}
		key = strings.TrimRight(key, " \t")
		value = strings.Trim(value, " \t")
		base, locale, err := splitKey(key)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if group == "" {
			return nil, fmt.Errorf("%w: line %d: key %q before any group", ErrSyntax, n, key)
		}
		if group != entryGroup {
			continue
		}
		if locale != "" {
			switch base {
			case "Name", "GenericName", "Comment":
				m := e.localized[base]
				if m == nil {
					m = map[string]string{}
					e.localized[base] = m
				}
				if _, dup := m[locale]; !dup {
					m[locale] = value
				}
			}
			continue
		}
		if _, dup := e.keys[key]; !dup {
			e.keys[key] = value
		}
	}
	if !seenEntry {
		return nil, ErrNoEntry
	}
	e.Type = e.str("Type")
	e.Name = e.str("Name")
	e.GenericName = e.str("GenericName")
	e.Comment = e.str("Comment")
	e.Icon = e.str("Icon")
	e.Exec = e.str("Exec")
	e.TryExec = e.str("TryExec")
	e.Path = e.str("Path")
	e.StartupWMClass = e.str("StartupWMClass")
	e.Categories = splitList(e.keys["Categories"])
	e.NoDisplay = e.boolean("NoDisplay")
	e.Hidden = e.boolean("Hidden")
	e.Terminal = e.boolean("Terminal")
	e.DBusActivatable = e.boolean("DBusActivatable")
	if e.Type == "" {
		return nil, fmt.Errorf("%w: no Type", ErrInvalid)
	}
	if e.Name == "" {
		return nil, fmt.Errorf("%w: no Name", ErrInvalid)
	}
	return e, nil
}

func (e *Entry) str(key string) string { return unescape(e.keys[key]) }

// boolean reads a boolean key; "true" (and the pre-1.0 "1") are true,
// anything else false.
func (e *Entry) boolean(key string) bool {
	v := e.keys[key]
	return v == "true" || v == "1"
}

func groupName(s string) (string, error) {
	if len(s) < 2 || s[len(s)-1] != ']' {
		return "", fmt.Errorf("%w: unterminated group header", ErrSyntax)
	}
	name := s[1 : len(s)-1]
	if name == "" {
		return "", fmt.Errorf("%w: empty group name", ErrSyntax)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x20 || c > 0x7e || c == '[' || c == ']' {
			return "", fmt.Errorf("%w: invalid character %q in group name", ErrSyntax, c)
		}
	}
	return name, nil
}

// splitKey splits "Name[de_DE@euro]" into "Name" and "de_DE@euro".
func splitKey(key string) (base, locale string, err error) {
	base = key
	if i := strings.IndexByte(key, '['); i >= 0 {
		if !strings.HasSuffix(key, "]") || i == len(key)-2 {
			return "", "", fmt.Errorf("%w: invalid localized key %q", ErrSyntax, key)
		}
		base, locale = key[:i], key[i+1:len(key)-1]
		for i := 0; i < len(locale); i++ {
			c := locale[i]
			if !(isAlnum(c) || c == '_' || c == '@' || c == '.' || c == '-') {
				return "", "", fmt.Errorf("%w: invalid locale in key %q", ErrSyntax, key)
			}
		}
	}
	if base == "" {
		return "", "", fmt.Errorf("%w: empty key", ErrSyntax)
	}
	for i := 0; i < len(base); i++ {
		if c := base[i]; !(isAlnum(c) || c == '-') {
			return "", "", fmt.Errorf("%w: invalid character %s in key %q", ErrSyntax, strconv.QuoteRune(rune(c)), key)
		}
	}
	return base, locale, nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// unescape applies the string escapes \s \n \t \r \\; an unknown escape is
// kept as it is.
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 's':
			b.WriteByte(' ')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\':
			b.WriteByte('\\')
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// splitList splits a list value on ';' (\; is a literal semicolon) and
// unescapes each element; empty elements are dropped.
func splitList(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == ';':
			cur.WriteByte(';')
			i++
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(c)
			cur.WriteByte(s[i+1])
			i++
		case c == ';':
			if cur.Len() > 0 {
				out = append(out, unescape(cur.String()))
			}
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, unescape(cur.String()))
	}
	return out
}

// ParseExec splits an (already string-unescaped) Exec value into arguments
// following the spec's quoting rules: arguments are separated by spaces; a
// double-quoted argument may hold spaces and escapes \" \` \$ \\ ; like GLib,
// a backslash outside quotes escapes the next character and single quotes
// quote literally. Field codes are removed: %f %F %u %U %i %c %k and the
// deprecated %d %D %n %N %v %m vanish (an argument that was only field codes
// is dropped), %% becomes %. Inside quotes, where the spec leaves field
// codes undefined, % is literal. An unterminated quote is ErrExecSyntax.
func ParseExec(s string) ([]string, error) {
	var (
		args   []string
		cur    strings.Builder
		inArg  bool // cur holds an argument, even an empty quoted one
		hadLit bool // the argument has literal content or quotes (not only field codes)
	)
	flush := func() {
		if inArg && hadLit {
			args = append(args, cur.String())
		}
		cur.Reset()
		inArg, hadLit = false, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			flush()
		case '"':
			inArg, hadLit = true, true
			closed := false
			for i++; i < len(s); i++ {
				c := s[i]
				if c == '\\' && i+1 < len(s) && strings.IndexByte("\"`$\\", s[i+1]) >= 0 {
					cur.WriteByte(s[i+1])
					i++
					continue
				}
				if c == '"' {
					closed = true
					break
				}
				cur.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("%w: unterminated double quote", ErrExecSyntax)
			}
		case '\'':
			inArg, hadLit = true, true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("%w: unterminated single quote", ErrExecSyntax)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case '\\':
			if i+1 == len(s) {
				return nil, fmt.Errorf("%w: trailing backslash", ErrExecSyntax)
			}
			i++
			cur.WriteByte(s[i])
			inArg, hadLit = true, true
		case '%':
			inArg = true
			if i+1 == len(s) {
				cur.WriteByte('%')
				hadLit = true
				continue
			}
			code := s[i+1]
			switch {
			case code == '%':
				cur.WriteByte('%')
				hadLit = true
				i++
			case strings.IndexByte("fFuUickdDnNvm", code) >= 0:
				i++ // a field code: dropped
			default:
				cur.WriteByte('%') // not a field code: kept literally
				hadLit = true
			}
		default:
			cur.WriteByte(c)
			inArg, hadLit = true, true
		}
	}
	flush()
	return args, nil
}
