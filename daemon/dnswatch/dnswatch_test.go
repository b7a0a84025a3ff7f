package dnswatch

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tollgate-fw/tollgate/daemon/attribution"
	"github.com/tollgate-fw/tollgate/daemon/dnscache"
	"github.com/tollgate-fw/tollgate/daemon/queue"
)

var (
	client   = netip.MustParseAddrPort("10.0.0.1:40000")
	resolver = netip.MustParseAddrPort("10.0.0.53:53")
	target   = netip.MustParseAddr("192.0.2.7")
)

// udp4 builds an IPv4/UDP packet (checksums are not looked at).
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = 64, 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

func dnsAnswer(t *testing.T, qname string, rrs ...dnsmessage.Resource) []byte {
	t.Helper()
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 1, Response: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(qname), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
		Answers:   rrs,
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rrA(name string, ip netip.Addr) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
		Body:   &dnsmessage.AResource{A: ip.As4()},
	}
}

// fakeAttrib answers for one socket.
type fakeAttrib struct {
	mu   sync.Mutex
	got  []attribution.Query
	proc attribution.Process
	ok   bool
}

func (f *fakeAttrib) Lookup(_ context.Context, q attribution.Query) (attribution.Process, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, q)
	if !f.ok {
		return attribution.Process{UID: 1000}, false, nil
	}
	return f.proc, true, nil
}

// fakeQueue records verdicts and, at each, what the cache says: the name
// must be there before the answer is let through.
type fakeQueue struct {
	cache    *dnscache.Cache
	owner    dnscache.Owner
	verdicts map[uint32]queue.Verdict
	namedAt  map[uint32][]string
	err      error
}

func (f *fakeQueue) Verdict(id uint32, v queue.Verdict) error {
	f.verdicts[id] = v
	f.namedAt[id], _ = f.cache.Lookup(f.owner, target)
	return f.err
}

func setup(t *testing.T, found bool) (*Watcher, *fakeQueue, *fakeAttrib, *dnscache.Cache) {
	c := dnscache.New(dnscache.Options{})
	owner := dnscache.Owner{PID: 4242, Start: 77, UID: 1000}
	fa := &fakeAttrib{ok: found, proc: attribution.Process{PID: 4242, PIDStart: 77, UID: 1000}}
	fq := &fakeQueue{cache: c, owner: owner, verdicts: map[uint32]queue.Verdict{}, namedAt: map[uint32][]string{}}
	return New(context.Background(), nil, fq, fa, c), fq, fa, c
}

func TestAnswerIsCachedForItsReceiverBeforeItIsAccepted(t *testing.T) {
	w, fq, fa, c := setup(t, true)
	w.Handle(queue.Packet{ID: 9, UID: -1, GID: -1, InDev: 3, Payload: udp4(resolver, client, dnsAnswer(t, "www.allowed.test.", rrA("www.allowed.test.", target)))})

	if v := fq.verdicts[9]; v.Kind != queue.Accept {
		t.Fatalf("verdict %v, want accept", v)
	}
	if !slices.Equal(fq.namedAt[9], []string{"www.allowed.test"}) {
		t.Errorf("at accept time the cache named %v %q; want www.allowed.test", target, fq.namedAt[9])
	}
	want := attribution.Query{Proto: 17, Local: client, Remote: resolver, UID: -1, GID: -1, IfIndex: 3}
	if len(fa.got) != 1 || fa.got[0] != want {
		t.Errorf("attribution asked %+v, want the query's socket %+v", fa.got, want)
	}
	if names, src := c.Lookup(dnscache.Owner{PID: 4242, Start: 77, UID: 1000}, target); src != dnscache.SourceProcess || len(names) != 1 {
		t.Errorf("receiver's lookup: %q %q", names, src)
	}
	if s := w.Stats(); s.Packets != 1 || s.Answers != 1 || s.Attributed != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestUnattributedAnswerIsKeptForTheUser(t *testing.T) {
	w, _, _, c := setup(t, false)
	w.Handle(queue.Packet{ID: 1, UID: -1, GID: -1, Payload: udp4(resolver, client, dnsAnswer(t, "www.allowed.test.", rrA("www.allowed.test.", target)))})
	if names, src := c.Lookup(dnscache.Owner{PID: 1, Start: 1, UID: 1000}, target); src != dnscache.SourceUser || !slices.Equal(names, []string{"www.allowed.test"}) {
		t.Errorf("same user's lookup: %q %q, want the name as user fallback", names, src)
	}
	if s := w.Stats(); s.Attributed != 0 || s.Answers != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestEverythingIsAccepted(t *testing.T) {
	w, fq, _, c := setup(t, true)
	fq.err = errors.New("kernel says no")
	other := netip.MustParseAddrPort("10.0.0.53:5353")
	query := dnsmessage.Message{Header: dnsmessage.Header{ID: 1}, Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("q.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	qb, _ := query.Pack()
	pkts := map[string][]byte{
		"garbage":         {1, 2, 3},
		"not port 53":     udp4(other, client, dnsAnswer(t, "x.test.", rrA("x.test.", target))),
		"not DNS":         udp4(resolver, client, []byte("hello")),
		"a query":         udp4(resolver, client, qb),
		"empty answer":    udp4(resolver, client, dnsAnswer(t, "x.test.")),
		"truncated reply": udp4(resolver, client, dnsAnswer(t, "x.test.", rrA("x.test.", target))[:20]),
	}
	id := uint32(0)
	for name, b := range pkts {
		id++
		w.Handle(queue.Packet{ID: id, UID: -1, Payload: b})
		if fq.verdicts[id].Kind != queue.Accept {
			t.Errorf("%s: verdict %v, want accept", name, fq.verdicts[id])
		}
	}
	if c.Len() != 0 {
		t.Errorf("cache learned %d records from non-answers", c.Len())
	}
	s := w.Stats()
	if s.Packets != 6 || s.NotDNS != 2 || s.Malformed != 2 || s.Skipped != 1 || s.AcceptErr != 6 {
		t.Errorf("stats %+v", s)
	}
}

// Whatever arrives on the queue gets exactly one accept and never a panic.
func FuzzHandle(f *testing.F) {
	f.Add(udp4(resolver, client, []byte{0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}))
	f.Add([]byte{0x45, 0, 0, 20})
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 17, 64})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := dnscache.New(dnscache.Options{MaxRecords: 64})
		fq := &fakeQueue{cache: c, verdicts: map[uint32]queue.Verdict{}, namedAt: map[uint32][]string{}}
		w := New(context.Background(), nil, fq, &fakeAttrib{ok: true, proc: attribution.Process{PID: 1, UID: 0}}, c)
		w.Handle(queue.Packet{ID: 1, UID: -1, Payload: b})
		if len(fq.verdicts) != 1 || fq.verdicts[1].Kind != queue.Accept {
			t.Fatalf("verdicts %v, want one accept", fq.verdicts)
		}
	})
}

func BenchmarkHandle(b *testing.B) {
	c := dnscache.New(dnscache.Options{})
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 1, Response: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("www.allowed.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
		Answers: []dnsmessage.Resource{
			{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("www.allowed.test."), Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET, TTL: 60},
				Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("edge.cdn.test.")}},
			rrA("edge.cdn.test.", target),
		},
	}
	msg, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	pkt := udp4(resolver, client, msg)
	w := New(context.Background(), nil, nopVerdicts{}, &fakeAttrib{ok: true, proc: attribution.Process{PID: 1, UID: 0}}, c)
	b.ReportAllocs()
	for b.Loop() {
		w.Handle(queue.Packet{ID: 1, UID: -1, Payload: pkt})
	}
}

type nopVerdicts struct{}

func (nopVerdicts) Verdict(uint32, queue.Verdict) error { return nil }
