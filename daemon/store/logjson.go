package store

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tollgate-fw/tollgate/shared"
)

// appendLogJSON appends the JSON of e exactly as json.Marshal writes it
// (same keys, order, omissions and escaping), without reflection: the
// connection log is written for every decision. The records on disk stay
// what earlier builds wrote and read back with json.Unmarshal; a fuzz test
// holds the two encoders to the same bytes, and TestLogJSONKnowsEveryField
// fails when shared.LogEntry gains a field this encoder does not write.
//
// ok is false when json.Marshal would fail (a time outside what RFC 3339
// can say); the caller then asks json.Marshal for its error.
func appendLogJSON(dst []byte, e *shared.LogEntry) (_ []byte, ok bool) {
	c := &e.Connection
	dst = append(dst, `{"connection":{`...)
	sep := false // a field was written: the next one needs a comma
	key := func(k string) {
		if sep {
			dst = append(dst, ',')
		}
		sep = true
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
	}
	str := func(k, v string) {
		if v != "" {
			key(k)
			dst = appendJSONString(dst, v)
		}
	}
	if c.ID != 0 {
		key("id")
		dst = strconv.AppendUint(dst, c.ID, 10)
	}
	if !c.Time.IsZero() {
		key("time")
		if dst, ok = appendJSONTime(dst, c.Time); !ok {
			return dst, false
		}
	}
	str("direction", string(c.Direction))
	str("proto", string(c.Proto))
	if c.ProtoNum != 0 {
		key("proto_num")
		dst = strconv.AppendUint(dst, uint64(c.ProtoNum), 10)
	}
	if c.LocalIP.IsValid() {
		key("local_ip")
		dst = appendJSONAddr(dst, c.LocalIP)
	}
	if c.LocalPort != 0 {
		key("local_port")
		dst = strconv.AppendUint(dst, uint64(c.LocalPort), 10)
	}
	if c.RemoteIP.IsValid() {
		key("remote_ip")
		dst = appendJSONAddr(dst, c.RemoteIP)
	}
	if c.RemotePort != 0 {
		key("remote_port")
		dst = strconv.AppendUint(dst, uint64(c.RemotePort), 10)
	}
	str("iface", c.Iface)
	key("uid")
	dst = strconv.AppendInt(dst, c.UID, 10)
	key("gid")
	dst = strconv.AppendInt(dst, c.GID, 10)
	if c.PID != 0 {
		key("pid")
		dst = strconv.AppendInt(dst, int64(c.PID), 10)
	}
	if c.PIDStart != 0 {
		key("pid_start")
		dst = strconv.AppendUint(dst, c.PIDStart, 10)
	}
	if c.PPID != 0 {
		key("ppid")
		dst = strconv.AppendInt(dst, int64(c.PPID), 10)
	}
	str("exe", c.Exe)
	str("exe_claimed", c.ExeClaimed)
	str("exe_sha256", c.ExeSHA256)
	str("cmdline", c.Cmdline)
	str("unit", c.Unit)
	str("app", c.App)
	str("user", c.User)
	str("attribution", string(c.Attribution))
	if len(c.Hosts) > 0 {
		key("hosts")
		dst = append(dst, '[')
		for i, h := range c.Hosts {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, h)
		}
		dst = append(dst, ']')
	}
	str("host_source", c.HostSource)

	v := &e.Verdict
	dst = append(dst, `},"verdict":{"action":`...)
	dst = appendJSONString(dst, string(v.Action))
	sep = true
	str("rule_id", v.RuleID)
	str("reason", v.Reason)
	if v.Monitor {
		key("monitor")
		dst = append(dst, "true"...)
	}
	if v.Unasked {
		key("unasked")
		dst = append(dst, "true"...)
	}
	if v.Answered {
		key("answered")
		dst = append(dst, "true"...)
	}
	return append(dst, '}', '}'), true
}

// appendJSONTime appends t as time.Time.MarshalJSON does (RFC 3339 with
// nanoseconds, quoted); false for the times it refuses: a year outside
// 0..9999 or a zone offset of 24 hours or more.
func appendJSONTime(dst []byte, t time.Time) ([]byte, bool) {
	dst = append(dst, '"')
	n0 := len(dst)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	b := dst[n0:]
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' {
		return dst, false
	}
	if b[len(b)-1] != 'Z' {
		c := b[len(b)-len("Z07:00")]
		hh := 10*(b[len(b)-5]-'0') + (b[len(b)-4] - '0')
		if ('0' <= c && c <= '9') || hh >= 24 {
			return dst, false
		}
	}
	return append(dst, '"'), true
}

// appendJSONAddr appends a as a JSON string of its text form (a zone may
// hold any byte, so it is escaped like any string).
func appendJSONAddr(dst []byte, a netip.Addr) []byte {
	var buf [64]byte
	return appendJSONString(dst, string(a.AppendTo(buf[:0])))
}

// appendJSONString appends s quoted as encoding/json does by default: HTML
// characters and U+2028/U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// marshalLogJSON is json.Marshal's answer for e, for the entries
// appendLogJSON cannot write (and for the tests that compare the two).
func marshalLogJSON(e *shared.LogEntry) ([]byte, error) { return json.Marshal(e) }
