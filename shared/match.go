package shared

import (
	"math/bits"
	"strings"
	"unicode/utf8"
)

// HostMatches reports whether the host name matches a rule's host pattern.
//
// A pattern is either a name ("example.org"), which matches that name only,
// or a wildcard ("*.example.org"), which matches every name below it
// ("a.example.org", "a.b.example.org") but not "example.org" itself. The
// comparison ignores ASCII case and one trailing dot on either side. An
// empty pattern or name matches nothing. HostMatches does not allocate.
func HostMatches(pattern, name string) bool {
	pattern = strings.TrimSuffix(pattern, ".")
	name = strings.TrimSuffix(name, ".")
	if pattern == "" || name == "" {
		return false
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		// suffix is ".example.org"; the name needs at least one more
		// character in front of it.
		if len(suffix) < 2 || suffix[0] != '.' || len(name) <= len(suffix) {
			return false
		}
		return strings.EqualFold(name[len(name)-len(suffix):], suffix)
	}
	return strings.EqualFold(pattern, name)
}

// IsGlob reports whether s holds a glob meta character (* ? [ or \), so
// that it must be matched as a pattern rather than compared exactly.
func IsGlob(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// GlobMatch reports whether name matches pattern, in the syntax of
// path.Match (* ? [class] and \ escapes) except that no character is
// special: '*' matches any run of characters, '/' and spaces included, and
// '?' any one character. It is used for command lines, where arguments hold
// slashes ("curl *" matches "curl https://example.org/x"). A malformed
// pattern matches nothing. GlobMatch does not allocate.
func GlobMatch(pattern, name string) bool {
	px, nx := 0, 0
	// After a mismatch, resume at the last '*' (starPx) with the name
	// advanced to starNx: the star absorbs one more character. starNx == 0
	// means no '*' seen yet; starNx > len(name) means nothing left to absorb.
	starPx, starNx := 0, 0
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starPx = px
				starNx = len(name) + 1
				if nx < len(name) {
					_, w := utf8.DecodeRuneInString(name[nx:])
					starNx = nx + w
				}
				px++
				continue
			case '?':
				if nx < len(name) {
					_, w := utf8.DecodeRuneInString(name[nx:])
					px++
					nx += w
					continue
				}
			case '[':
				r, w := utf8.RuneError, 0
				if nx < len(name) {
					r, w = utf8.DecodeRuneInString(name[nx:])
				}
				matched, n, ok := matchClass(pattern[px:], r)
				if !ok {
					return false
				}
				if matched && w > 0 {
					px += n
					nx += w
					continue
				}
			case '\\':
				if px+1 >= len(pattern) {
					return false
				}
				if nx < len(name) && name[nx] == pattern[px+1] {
					px += 2
					nx++
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if starNx > 0 && starNx <= len(name) {
			px, nx = starPx, starNx
			continue
		}
		return false
	}
	return true
}

// matchClass matches rune r against the character class at the start of
// pattern (which begins with '['). It returns whether r is in the class, the
// length of the class in pattern, and false in ok when the class is
// malformed.
func matchClass(pattern string, r rune) (matched bool, n int, ok bool) {
	i := 1
	negate := false
	if i < len(pattern) && pattern[i] == '^' {
		negate = true
		i++
	}
	ranges := 0
	for {
		if i < len(pattern) && pattern[i] == ']' && ranges > 0 {
			i++
			break
		}
		lo, w, ok := classChar(pattern[i:])
		if !ok {
			return false, 0, false
		}
		i += w
		hi := lo
		if i < len(pattern) && pattern[i] == '-' {
			hi, w, ok = classChar(pattern[i+1:])
			if !ok {
				return false, 0, false
			}
			i += 1 + w
		}
		if lo <= r && r <= hi {
			matched = true
		}
		ranges++
	}
	return matched != negate, i, true
}

// classChar reads one (possibly escaped) character of a character class.
func classChar(s string) (r rune, n int, ok bool) {
	if s == "" || s[0] == '-' || s[0] == ']' {
		return 0, 0, false
	}
	if s[0] == '\\' {
		if len(s) < 2 {
			return 0, 0, false
		}
		s = s[1:]
		n = 1
	}
	r, w := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && w == 1 {
		return 0, 0, false
	}
	return r, n + w, true
}

// Specificity weights, see Match.Specificity.
const (
	SpecExe          = 40 // exact executable path
	SpecExeGlob      = 20 // executable glob, plus 1 per 4 literal characters, at most +9
	SpecExeSHA256    = 30
	SpecCmdline      = 20 // exact command line
	SpecCmdlineGlob  = 10 // command-line glob, plus 1 per 8 literal characters, at most +9
	SpecUnit         = 20 // exact unit / cgroup
	SpecUnitGlob     = 10 // unit glob, plus 1 per 8 literal characters, at most +9
	SpecUID          = 10
	SpecGID          = 10
	SpecDirection    = 5
	SpecProto        = 5  // tcp, udp or icmp; "any" adds nothing
	SpecHost         = 30 // exact host name
	SpecHostWildcard = 10 // "*.suffix", plus 1 per label of the suffix, at most +19
	SpecIP           = 30 // a single address
	SpecIPPrefix     = 10 // a CIDR, plus up to +19 in proportion to its prefix length
	SpecPort         = 20 // a single port (remote or local)
	SpecPortRange    = 10 // a port range, plus up to +8 the narrower it is
	SpecIface        = 5
)

// Specificity scores how narrowly m picks connections; among matching rules
// of equal priority the highest score wins.
//
// Every given field adds its weight (Spec* constants), so adding a field to
// a rule always makes it more specific, and an empty Match (the catch-all)
// scores 0. Within a field the narrower form scores more: an exact
// executable (40) beats any executable glob (20-29, longer literal text more
// specific); an exe_sha256 pin adds 30; an exact host (30) beats any
// wildcard host (10 + labels of the suffix, so "*.a.example.org" beats
// "*.example.org"); a single address (30) beats any CIDR (10 plus 19 x
// prefix length / address length); a single port (20) beats any range (10
// plus 9 x (16 - bit length of width-1) / 16, so narrower ranges score
// more). Direction, protocol and interface are weak qualifiers (5 each);
// uid and gid add 10 each. Weights are chosen so that an application
// rule ("this exe, port 22") outranks a generic one ("tcp out port 22").
func (m Match) Specificity() int {
	s := 0
	if m.Exe != "" {
		if IsGlob(m.Exe) {
			s += SpecExeGlob + min(literalLen(m.Exe)/4, 9)
		} else {
			s += SpecExe
		}
	}
	if m.ExeSHA256 != "" {
		s += SpecExeSHA256
	}
	if m.Cmdline != "" {
		if IsGlob(m.Cmdline) {
			s += SpecCmdlineGlob + min(literalLen(m.Cmdline)/8, 9)
		} else {
			s += SpecCmdline
		}
	}
	if m.Unit != "" {
		if IsGlob(m.Unit) {
			s += SpecUnitGlob + min(literalLen(m.Unit)/8, 9)
		} else {
			s += SpecUnit
		}
	}
	if m.UID != nil {
		s += SpecUID
	}
	if m.GID != nil {
		s += SpecGID
	}
	if m.Direction != "" {
		s += SpecDirection
	}
	if m.Proto != "" && m.Proto != ProtoAny {
		s += SpecProto
	}
	if m.Host != "" {
		if suffix, ok := strings.CutPrefix(m.Host, "*."); ok {
			s += SpecHostWildcard + min(strings.Count(strings.TrimSuffix(suffix, "."), ".")+1, 19)
		} else {
			s += SpecHost
		}
	}
	if m.IP.IsValid() {
		if m.IP.IsSingleIP() {
			s += SpecIP
		} else {
			s += SpecIPPrefix + 19*m.IP.Bits()/m.IP.Addr().BitLen()
		}
	}
	s += portSpecificity(m.Port)
	s += portSpecificity(m.LocalPort)
	if m.Iface != "" {
		s += SpecIface
	}
	return s
}

func portSpecificity(r PortRange) int {
	switch {
	case r.IsAny():
		return 0
	case r.Lo == r.Hi:
		return SpecPort
	default:
		w := r.Width()
		if w <= 0 {
			return SpecPortRange
		}
		return SpecPortRange + 9*(16-bits.Len(uint(w-1)))/16
	}
}

// literalLen counts the characters of a glob that are not meta characters.
func literalLen(pattern string) int {
	n := 0
	inClass := false
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '\\':
			i++
			if !inClass {
				n++
			}
		case c == '[':
			inClass = true
		case c == ']' && inClass:
			inClass = false
		case c == '*' || c == '?':
		default:
			if !inClass {
				n++
			}
		}
	}
	return n
}
