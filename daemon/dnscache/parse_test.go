package dnscache

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// answer builds a DNS response to qname with the given answer records.
func answer(t testing.TB, qname string, rcode dnsmessage.RCode, rrs ...dnsmessage.Resource) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, Response: true, RCode: rcode})
	b.EnableCompression()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(qname), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	must(b.StartAnswers())
	for _, r := range rrs {
		switch body := r.Body.(type) {
		case *dnsmessage.AResource:
			must(b.AResource(r.Header, *body))
		case *dnsmessage.AAAAResource:
			must(b.AAAAResource(r.Header, *body))
		case *dnsmessage.CNAMEResource:
			must(b.CNAMEResource(r.Header, *body))
		case *dnsmessage.TXTResource:
			must(b.TXTResource(r.Header, *body))
		default:
			t.Fatalf("unsupported %T", body)
		}
	}
	msg, err := b.Finish()
	must(err)
	return msg
}

func hdr(name string, ttl uint32) dnsmessage.ResourceHeader {
	return dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl}
}

func rrA(name string, ttl uint32, ip string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(name, ttl), Body: &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()}}
}

func rrAAAA(name string, ttl uint32, ip string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(name, ttl), Body: &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(ip).As16()}}
}

func rrCNAME(name string, ttl uint32, target string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(name, ttl), Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(target)}}
}

func TestParseAnswer(t *testing.T) {
	tests := []struct {
		name    string
		msg     func(t testing.TB) []byte
		qname   string
		records []Record
		err     error
	}{
		{
			name: "A and AAAA, case folded, other types skipped",
			msg: func(t testing.TB) []byte {
				return answer(t, "WWW.Example.ORG.", dnsmessage.RCodeSuccess,
					rrA("WWW.Example.ORG.", 60, "192.0.2.1"),
					dnsmessage.Resource{Header: hdr("www.example.org.", 5), Body: &dnsmessage.TXTResource{TXT: []string{"x"}}},
					rrAAAA("www.example.org.", 30, "2001:db8::1"))
			},
			qname: "www.example.org",
			records: []Record{
				{Name: "www.example.org", Kind: KindA, TTL: 60, Addr: netip.MustParseAddr("192.0.2.1")},
				{Name: "www.example.org", Kind: KindAAAA, TTL: 30, Addr: netip.MustParseAddr("2001:db8::1")},
			},
		},
		{
			name: "CNAME chain",
			msg: func(t testing.TB) []byte {
				return answer(t, "www.a.test.", dnsmessage.RCodeSuccess,
					rrCNAME("www.a.test.", 300, "cdn.b.test."),
					rrA("cdn.b.test.", 20, "1.2.3.4"))
			},
			qname: "www.a.test",
			records: []Record{
				{Name: "www.a.test", Kind: KindCNAME, TTL: 300, Target: "cdn.b.test"},
				{Name: "cdn.b.test", Kind: KindA, TTL: 20, Addr: netip.MustParseAddr("1.2.3.4")},
			},
		},
		{
			name: "IPv4-mapped AAAA is the IPv4 address",
			msg: func(t testing.TB) []byte {
				return answer(t, "m.test.", dnsmessage.RCodeSuccess, rrAAAA("m.test.", 1, "::ffff:10.0.0.1"))
			},
			qname:   "m.test",
			records: []Record{{Name: "m.test", Kind: KindAAAA, TTL: 1, Addr: netip.MustParseAddr("10.0.0.1")}},
		},
		{
			name: "odd bytes in a name: record skipped",
			msg: func(t testing.TB) []byte {
				return answer(t, "ok.test.", dnsmessage.RCodeSuccess,
					rrA("b\\@d.test.", 1, "10.0.0.9"), rrA("ok.test.", 1, "10.0.0.1"))
			},
			qname:   "ok.test",
			records: []Record{{Name: "ok.test", Kind: KindA, TTL: 1, Addr: netip.MustParseAddr("10.0.0.1")}},
		},
		{
			name: "NXDOMAIN",
			msg: func(t testing.TB) []byte {
				return answer(t, "nx.test.", dnsmessage.RCodeNameError)
			},
			err: ErrNotAnswer,
		},
		{
			name: "a query",
			msg: func(t testing.TB) []byte {
				m := dnsmessage.Message{Header: dnsmessage.Header{ID: 1}, Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("q.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
				b, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			err: ErrNotAnswer,
		},
		{
			name: "truncated",
			msg: func(t testing.TB) []byte {
				b := answer(t, "www.a.test.", dnsmessage.RCodeSuccess, rrA("www.a.test.", 1, "1.2.3.4"))
				return b[:len(b)-2]
			},
			err: ErrMalformed,
		},
		{name: "empty", msg: func(testing.TB) []byte { return nil }, err: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, recs, err := ParseAnswer(tt.msg(t))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if q != tt.qname || !slices.Equal(recs, tt.records) {
				t.Errorf("got %q %+v\nwant %q %+v", q, recs, tt.qname, tt.records)
			}
		})
	}
}

func TestParseAnswerBoundsRecords(t *testing.T) {
	var rrs []dnsmessage.Resource
	for i := 0; i < 200; i++ {
		rrs = append(rrs, rrA("many.test.", 1, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String()))
	}
	_, recs, err := ParseAnswer(answer(t, "many.test.", dnsmessage.RCodeSuccess, rrs...))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != maxRecords {
		t.Errorf("kept %d records, want the bound %d", len(recs), maxRecords)
	}
}

func FuzzParseAnswer(f *testing.F) {
	f.Add(answer(f, "www.a.test.", dnsmessage.RCodeSuccess, rrCNAME("www.a.test.", 300, "cdn.b.test."), rrA("cdn.b.test.", 20, "1.2.3.4")))
	f.Add(answer(f, "v6.test.", dnsmessage.RCodeSuccess, rrAAAA("v6.test.", 20, "2001:db8::1")))
	f.Add(answer(f, "nx.test.", dnsmessage.RCodeNameError))
	f.Add([]byte{0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c})
	f.Fuzz(func(t *testing.T, b []byte) {
		q, recs, err := ParseAnswer(b)
		if err != nil {
			if q != "" || recs != nil {
				t.Fatalf("error %v with results %q %v", err, q, recs)
			}
			return
		}
		if _, ok := normalName(q); !ok {
			t.Fatalf("qname %q is not a normal host name", q)
		}
		if len(recs) > maxRecords {
			t.Fatalf("%d records", len(recs))
		}
		for _, r := range recs {
			if n, ok := normalName(r.Name); !ok || n != r.Name {
				t.Fatalf("record name %q not normal", r.Name)
			}
			switch r.Kind {
			case KindA, KindAAAA:
				if !r.Addr.IsValid() || r.Addr.Is4In6() {
					t.Fatalf("bad address %v", r.Addr)
				}
			case KindCNAME:
				if n, ok := normalName(r.Target); !ok || n != r.Target {
					t.Fatalf("cname target %q not normal", r.Target)
				}
			default:
				t.Fatalf("kind %v", r.Kind)
			}
		}
		// Whatever parses can be cached without trouble.
		c := New(Options{MaxRecords: 16, MaxPerAddr: 4})
		c.Insert(Owner{PID: 1, Start: 1, UID: 0}, q, recs)
		if c.Len() > 16 {
			t.Fatalf("cache holds %d records over its bound", c.Len())
		}
	})
}

func BenchmarkParseAnswer(b *testing.B) {
	msg := answer(b, "www.a.test.", dnsmessage.RCodeSuccess,
		rrCNAME("www.a.test.", 300, "cdn.b.test."), rrA("cdn.b.test.", 20, "1.2.3.4"), rrA("cdn.b.test.", 20, "1.2.3.5"))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseAnswer(msg); err != nil {
			b.Fatal(err)
		}
	}
}
