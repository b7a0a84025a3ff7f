package dnscache

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// Kind is the type of a Record.
type Kind uint8

const (
	KindA     Kind = iota + 1 // an IPv4 address
	KindAAAA                  // an IPv6 address
	KindCNAME                 // an alias: Name is another name for Target
)

func (k Kind) String() string {
	switch k {
	case KindA:
		return "A"
	case KindAAAA:
		return "AAAA"
	case KindCNAME:
		return "CNAME"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Record is one answer record ParseAnswer kept. Names are lower-case
// without the trailing dot.
type Record struct {
	Name   string
	Kind   Kind
	TTL    uint32     // seconds, as the answer gave it
	Addr   netip.Addr // KindA, KindAAAA
	Target string     // KindCNAME
}

// Errors ParseAnswer returns (wrapped); callers branch on them to count
// what they skipped.
var (
	// ErrNotAnswer: the message is a query, or not a successful answer
	// (NXDOMAIN, SERVFAIL...), or has no question.
	ErrNotAnswer = errors.New("dns: not a successful answer")
	// ErrMalformed: the bytes are not a DNS message.
	ErrMalformed = errors.New("dns: malformed message")
)

// maxRecords bounds the records kept from one answer.
const maxRecords = 64

// ParseAnswer reads a DNS response (the UDP payload, or a TCP message
// without its length prefix) and returns the name asked for and the A,
// AAAA and CNAME records of the answer section, in the order given. Other
// record types are skipped, as are names that are not plain host names
// (letters, digits, '-', '_' and dots). Only class IN counts.
func ParseAnswer(payload []byte) (qname string, records []Record, err error) {
	var p dnsmessage.Parser
	h, err := p.Start(payload)
	if err != nil {
		return "", nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if !h.Response || h.OpCode != 0 || h.RCode != dnsmessage.RCodeSuccess {
		return "", nil, fmt.Errorf("%w: response=%v opcode=%d rcode=%v", ErrNotAnswer, h.Response, h.OpCode, h.RCode)
	}
	q, err := p.Question()
	if errors.Is(err, dnsmessage.ErrSectionDone) {
		return "", nil, fmt.Errorf("%w: no question", ErrNotAnswer)
	}
	if err != nil {
		return "", nil, fmt.Errorf("%w: question: %v", ErrMalformed, err)
	}
	qname, ok := hostName(q.Name)
	if !ok || q.Class != dnsmessage.ClassINET {
		return "", nil, fmt.Errorf("%w: question %q class %v is not a host name", ErrNotAnswer, q.Name.String(), q.Class)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return "", nil, fmt.Errorf("%w: questions: %v", ErrMalformed, err)
	}
	for len(records) < maxRecords {
		ah, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("%w: answer header: %v", ErrMalformed, err)
		}
		name, nameOK := hostName(ah.Name)
		if !nameOK || ah.Class != dnsmessage.ClassINET {
			if err := p.SkipAnswer(); err != nil {
				return "", nil, fmt.Errorf("%w: skip answer: %v", ErrMalformed, err)
			}
			continue
		}
		r := Record{Name: name, TTL: ah.TTL}
		switch ah.Type {
		case dnsmessage.TypeA:
			a, err := p.AResource()
			if err != nil {
				return "", nil, fmt.Errorf("%w: A record: %v", ErrMalformed, err)
			}
			r.Kind, r.Addr = KindA, netip.AddrFrom4(a.A)
		case dnsmessage.TypeAAAA:
			a, err := p.AAAAResource()
			if err != nil {
				return "", nil, fmt.Errorf("%w: AAAA record: %v", ErrMalformed, err)
			}
			// An IPv4-mapped address in AAAA is what the application
			// will connect to as IPv4.
			r.Kind, r.Addr = KindAAAA, netip.AddrFrom16(a.AAAA).Unmap()
		case dnsmessage.TypeCNAME:
			c, err := p.CNAMEResource()
			if err != nil {
				return "", nil, fmt.Errorf("%w: CNAME record: %v", ErrMalformed, err)
			}
			t, ok := hostName(c.CNAME)
			if !ok {
				continue
			}
			r.Kind, r.Target = KindCNAME, t
		default:
			if err := p.SkipAnswer(); err != nil {
				return "", nil, fmt.Errorf("%w: skip answer: %v", ErrMalformed, err)
			}
			continue
		}
		records = append(records, r)
	}
	return qname, records, nil
}

// hostName returns n lower-cased without its trailing dot, when it is a
// plain host name.
func hostName(n dnsmessage.Name) (string, bool) {
	s := n.String()
	s = strings.TrimSuffix(s, ".")
	return normalName(s)
}

// maxNameLen is the longest name kept (the DNS limit on a presented name).
const maxNameLen = 253

// normalName lower-cases s and checks that it is a plain host name:
// non-empty labels of letters, digits, '-' and '_' joined by dots.
func normalName(s string) (string, bool) {
	if s == "" || len(s) > maxNameLen {
		return "", false
	}
	lower := true
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			label++
		case c >= 'A' && c <= 'Z':
			lower = false
			label++
		case c == '.':
			if label == 0 {
				return "", false
			}
			label = 0
		default:
			return "", false
		}
	}
	if label == 0 {
		return "", false
	}
	if !lower {
		s = strings.ToLower(s)
	}
	return s, true
}
