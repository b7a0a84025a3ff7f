package attribution

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tollgate-fw/tollgate/shared"
)

// statInfo holds the fields of /proc/PID/stat the attributor needs.
type statInfo struct {
	State byte   // R, S, D, Z, X...
	PPID  int    // parent process id
	Start uint64 // start time in clock ticks since boot (field 22)
}

// exited reports whether the process has ended (zombie or dead).
func (s statInfo) exited() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

var errMalformed = errors.New("malformed")

// parseStat reads /proc/PID/stat: "pid (comm) state ppid ... starttime ...".
// comm may hold spaces and parentheses, so fields are counted after the
// last ')'.
func parseStat(b []byte) (statInfo, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return statInfo{}, fmt.Errorf("stat without ')': %w", errMalformed)
	}
	rest := b[i+1:]
	// Fields after comm start at field 3 (state); starttime is field 22.
	var st statInfo
	field := 3
	for len(rest) > 0 && field <= 22 {
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) == 0 {
			break
		}
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		f := bytes.TrimRight(rest[:end], "\n")
		rest = rest[end:]
		switch field {
		case 3:
			if len(f) != 1 || !(f[0] >= 'A' && f[0] <= 'Z' || f[0] >= 'a' && f[0] <= 'z') {
				return statInfo{}, fmt.Errorf("stat state %q: %w", f, errMalformed)
			}
			st.State = f[0]
		case 4:
			v, err := strconv.ParseInt(string(f), 10, 32)
			if err != nil || v < 0 {
				return statInfo{}, fmt.Errorf("stat ppid %q: %w", f, errMalformed)
			}
			st.PPID = int(v)
		case 22:
			v, err := strconv.ParseUint(string(f), 10, 64)
			if err != nil {
				return statInfo{}, fmt.Errorf("stat starttime %q: %w", f, errMalformed)
			}
			st.Start = v
			return st, nil
		}
		field++
	}
	return statInfo{}, fmt.Errorf("stat with %d fields: %w", field-1, errMalformed)
}

// parseSocketLink reads the target of a /proc/PID/fd link: "socket:[123]".
func parseSocketLink(b []byte) (uint64, bool) {
	const pre = "socket:["
	if len(b) < len(pre)+2 || string(b[:len(pre)]) != pre || b[len(b)-1] != ']' {
		return 0, false
	}
	digits := b[len(pre) : len(b)-1]
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// parseStatusIDs reads the real and effective ids of a "Uid:" or "Gid:" line
// of /proc/PID/status ("Uid:\t1000\t1000\t1000\t1000").
func parseStatusIDs(b []byte, key string) (real, eff int64, err error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if !bytes.HasPrefix(line, []byte(key)) || len(line) == len(key) || line[len(key)] != ':' {
			continue
		}
		f := strings.Fields(string(line[len(key)+1:]))
		if len(f) < 2 {
			return 0, 0, fmt.Errorf("status %s line %q: %w", key, line, errMalformed)
		}
		r, err1 := strconv.ParseUint(f[0], 10, 32)
		e, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("status %s line %q: %w", key, line, errMalformed)
		}
		return int64(r), int64(e), nil
	}
	return 0, 0, fmt.Errorf("status without %s: %w", key, errMalformed)
}

// procNetEntry is one socket line of /proc/net/{tcp,udp,icmp}{,6}.
type procNetEntry struct {
	Local, Remote netip.AddrPort
	State         uint8
	UID           uint32
	Inode         uint64
}

// parseProcNet reads a /proc/net/{tcp,udp,icmp}{,6} table and calls fn for
// each socket line. Addresses are printed as 32-bit words in host order.
func parseProcNet(b []byte, fn func(procNetEntry)) error {
	first := true
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if first { // the header
			first = false
			continue
		}
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return fmt.Errorf("proc net line %q: %w", line, errMalformed)
		}
		var e procNetEntry
		var err error
		if e.Local, err = parseHexAddrPort(f[1]); err != nil {
			return err
		}
		if e.Remote, err = parseHexAddrPort(f[2]); err != nil {
			return err
		}
		st, err := strconv.ParseUint(string(f[3]), 16, 8)
		if err != nil {
			return fmt.Errorf("proc net state %q: %w", f[3], errMalformed)
		}
		e.State = uint8(st)
		uid, err := strconv.ParseUint(string(f[7]), 10, 32)
		if err != nil {
			return fmt.Errorf("proc net uid %q: %w", f[7], errMalformed)
		}
		e.UID = uint32(uid)
		if e.Inode, err = strconv.ParseUint(string(f[9]), 10, 64); err != nil {
			return fmt.Errorf("proc net inode %q: %w", f[9], errMalformed)
		}
		fn(e)
	}
	return nil
}

// parseHexAddrPort reads "0100007F:0035" or the 32-hex-digit IPv6 form.
func parseHexAddrPort(b []byte) (netip.AddrPort, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("proc net address %q: %w", b, errMalformed)
	}
	hexAddr, hexPort := b[:i], b[i+1:]
	port, err := strconv.ParseUint(string(hexPort), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("proc net port %q: %w", hexPort, errMalformed)
	}
	var raw [16]byte
	switch len(hexAddr) {
	case 8, 32:
	default:
		return netip.AddrPort{}, fmt.Errorf("proc net address %q: %w", hexAddr, errMalformed)
	}
	for w := 0; w < len(hexAddr)/8; w++ {
		v, err := strconv.ParseUint(string(hexAddr[w*8:w*8+8]), 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("proc net address %q: %w", hexAddr, errMalformed)
		}
		native.PutUint32(raw[w*4:], uint32(v))
	}
	if len(hexAddr) == 8 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[:4])), uint16(port)), nil
	}
	return netip.AddrPortFrom(netip.AddrFrom16(raw).Unmap(), uint16(port)), nil
}

// boundText keeps text a process chose (a joined command line, a unit
// path) within shared.MaxProcessText bytes: one that is longer, or whose
// raw form was read only in part (cut), ends in "…", cut on a UTF-8
// boundary.
func boundText(b []byte, cut bool) []byte {
	const mark = "…"
	if len(b) <= shared.MaxProcessText && !cut {
		return b
	}
	n := min(len(b), shared.MaxProcessText-len(mark))
	for n > 0 && n < len(b) && !utf8.RuneStart(b[n]) {
		n--
	}
	return append(b[:n], mark...)
}

// joinCmdline appends the arguments of a /proc/PID/cmdline (each ended by
// a NUL) to dst joined by single spaces, skipping empty ones: the form
// gopsutil's Cmdline gives, which rules and logs have always seen.
func joinCmdline(dst, raw []byte) []byte {
	first := true
	for len(raw) > 0 {
		arg := raw
		if i := bytes.IndexByte(raw, 0); i >= 0 {
			arg, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(arg) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ' ')
		}
		dst = append(dst, arg...)
		first = false
	}
	return dst
}
