package pending

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

type fakeAgents map[int64][]string

func (f fakeAgents) For(uid int64) []string { return f[uid] }

type resolved struct {
	g    Group
	v    shared.Verdict
	pkts []Packet
}

type recorder struct {
	mu       sync.Mutex
	pending  []Group
	resolved []resolved
}

func (r *recorder) Pending(g Group) {
	r.mu.Lock()
	r.pending = append(r.pending, g)
	r.mu.Unlock()
}

func (r *recorder) Resolved(g Group, v shared.Verdict, pkts []Packet) {
	r.mu.Lock()
	r.resolved = append(r.resolved, resolved{g, v, pkts})
	r.mu.Unlock()
}

func conn(pid int, uid int64, port uint16, local uint16) shared.Connection {
	return shared.Connection{PID: pid, PIDStart: 7, UID: uid, Exe: "/usr/bin/app", Direction: shared.DirectionOut,
		Proto: shared.ProtoTCP, RemoteIP: netip.MustParseAddr("192.0.2.1"), RemotePort: port, LocalPort: local}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newBroker(opts Options) (*Broker, *recorder, *clock) {
	clk := &clock{t: time.Unix(1000, 0)}
	opts.Now = clk.now
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	rec := &recorder{}
	return New(opts, fakeAgents{1000: {":1.10"}, 1001: {":1.11"}, 0: {":1.1"}}, rec), rec, clk
}

func TestSameQuestionJoinsOneGroupAndAllPacketsGetTheAnswer(t *testing.T) {
	b, rec, _ := newBroker(Options{})
	for i := uint32(1); i <= 3; i++ {
		if !b.Ask(Packet{ID: i, Conn: conn(10, 1000, 443, uint16(50000+i))}) {
			t.Fatalf("packet %d not held", i)
		}
	}
	b.Ask(Packet{ID: 4, Conn: conn(10, 1000, 80, 50004)}) // another port: another question
	if len(rec.pending) != 2 {
		t.Fatalf("%d prompts, want 2", len(rec.pending))
	}
	g := rec.pending[0]
	if g.Agents[0] != ":1.10" || g.Conn.LocalPort != 50001 {
		t.Errorf("group %+v", g)
	}
	if got, _ := b.Get(g.ID); got.Count != 3 {
		t.Errorf("count %d, want 3", got.Count)
	}
	allow := shared.Verdict{Action: shared.ActionAllow, Reason: "answered"}
	if _, err := b.Answer(g.ID, ":1.10", false, allow); err != nil {
		t.Fatal(err)
	}
	if len(rec.resolved) != 1 || len(rec.resolved[0].pkts) != 3 || rec.resolved[0].v != allow {
		t.Fatalf("resolved %+v", rec.resolved)
	}
	if _, err := b.Answer(g.ID, ":1.10", false, allow); !errors.Is(err, ErrNotFound) {
		t.Errorf("second answer: %v, want ErrNotFound", err)
	}
	if b.Len() != 1 {
		t.Errorf("%d groups open, want 1", b.Len())
	}
}

func TestNobodyToAskMeansNothingIsHeld(t *testing.T) {
	b, rec, _ := newBroker(Options{})
	if b.Ask(Packet{ID: 1, Conn: conn(10, 4242, 443, 1)}) {
		t.Fatal("held a connection of a user with no agent")
	}
	if len(rec.pending) != 0 || b.Len() != 0 {
		t.Error("a group was opened")
	}
}

func TestOnlyTheOfferedAgentOrAnAdminAnswers(t *testing.T) {
	b, _, _ := newBroker(Options{})
	b.Ask(Packet{ID: 1, Conn: conn(10, 1000, 443, 1)})
	g := b.List(-1)[0]
	deny := shared.Verdict{Action: shared.ActionDeny}
	if _, err := b.Answer(g.ID, ":1.11", false, deny); !errors.Is(err, ErrNotEntitled) {
		t.Errorf("other user's agent: %v, want ErrNotEntitled", err)
	}
	if _, err := b.Answer(g.ID, "", true, deny); err != nil {
		t.Errorf("admin: %v", err)
	}
}

func TestBounds(t *testing.T) {
	b, _, _ := newBroker(Options{MaxGroups: 2, MaxPerGroup: 2, MaxPerUID: 2})
	if !b.Ask(Packet{ID: 1, Conn: conn(10, 1000, 1, 1)}) || !b.Ask(Packet{ID: 2, Conn: conn(10, 1000, 2, 1)}) {
		t.Fatal("first two groups not held")
	}
	if b.Ask(Packet{ID: 3, Conn: conn(10, 1000, 3, 1)}) {
		t.Error("third group held past MaxGroups")
	}
	if !b.Ask(Packet{ID: 4, Conn: conn(10, 1000, 1, 2)}) {
		t.Error("joining an open group refused")
	}
	if b.Ask(Packet{ID: 5, Conn: conn(10, 1000, 1, 3)}) {
		t.Error("packet held past MaxPerGroup")
	}
}

func TestOneUserCannotTakeEveryGroup(t *testing.T) {
	b, _, _ := newBroker(Options{MaxGroups: 8, MaxPerUID: 2})
	for port := uint16(1); port <= 2; port++ {
		if !b.Ask(Packet{ID: uint32(port), Conn: conn(10, 1000, port, 1)}) {
			t.Fatalf("group %d not held", port)
		}
	}
	if b.Ask(Packet{ID: 3, Conn: conn(10, 1000, 3, 1)}) {
		t.Error("a third group of the same user held past MaxPerUID")
	}
	if !b.Ask(Packet{ID: 4, Conn: conn(10, 1001, 3, 1)}) {
		t.Error("another user's prompt refused")
	}
	g := b.List(1000)[0]
	b.Answer(g.ID, ":1.10", false, shared.Verdict{Action: shared.ActionAllow})
	if !b.Ask(Packet{ID: 5, Conn: conn(10, 1000, 3, 1)}) {
		t.Error("a group freed by an answer is not available again")
	}
	if (Options{MaxGroups: 8, MaxPerGroup: 4}).MaxHeld() != 32 {
		t.Error("MaxHeld")
	}
}

func TestSnapshotsDoNotShareAgents(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	rec := &recorder{}
	b := New(Options{Timeout: time.Minute, Now: clk.now}, fakeAgents{1000: {":1.10", ":1.20"}}, rec)
	b.Ask(Packet{ID: 1, Conn: conn(10, 1000, 443, 1)})
	listed := b.List(-1)[0]
	b.AgentGone(":1.10")
	if listed.Agents[0] != ":1.10" || len(listed.Agents) != 2 || rec.pending[0].Agents[0] != ":1.10" {
		t.Errorf("a snapshot changed under its reader: %v %v", listed.Agents, rec.pending[0].Agents)
	}
}

func TestTimeoutGivesTheDefault(t *testing.T) {
	b, rec, clk := newBroker(Options{Timeout: 10 * time.Second, Default: shared.ActionReject})
	b.Ask(Packet{ID: 1, Conn: conn(10, 1000, 443, 1)})
	clk.t = clk.t.Add(5 * time.Second)
	b.Ask(Packet{ID: 2, Conn: conn(11, 1000, 443, 1)})
	clk.t = clk.t.Add(5 * time.Second)
	if n := b.Expire(); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	r := rec.resolved[0]
	if r.v.Action != shared.ActionReject || r.pkts[0].ID != 1 || !strings.Contains(r.v.Reason, "nobody answered") || r.v.Unasked {
		t.Errorf("expired with %+v", r)
	}
	if b.Len() != 1 {
		t.Error("the younger group expired too")
	}
}

func TestAgentGoneEndsOnlyGroupsNobodyElseCanAnswer(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	rec := &recorder{}
	b := New(Options{Timeout: time.Minute, Now: clk.now},
		fakeAgents{1000: {":1.10", ":1.20"}, 1001: {":1.11"}}, rec)
	b.Ask(Packet{ID: 1, Conn: conn(10, 1000, 443, 1)})
	b.Ask(Packet{ID: 2, Conn: conn(11, 1001, 443, 1)})
	if n := b.AgentGone(":1.11"); n != 1 {
		t.Fatalf("ended %d, want 1", n)
	}
	if rec.resolved[0].pkts[0].ID != 2 || rec.resolved[0].v.Action != shared.ActionDeny || !rec.resolved[0].v.Unasked {
		t.Errorf("resolved %+v", rec.resolved[0])
	}
	if n := b.AgentGone(":1.10"); n != 0 {
		t.Errorf("ended %d groups that :1.20 can still answer", n)
	}
	if n := b.AgentGone(":1.20"); n != 1 {
		t.Errorf("ended %d, want 1 after the last agent left", n)
	}
}

func TestListFiltersByUserAndCloseEndsAll(t *testing.T) {
	b, rec, _ := newBroker(Options{})
	b.Ask(Packet{ID: 1, Conn: conn(10, 1000, 443, 1)})
	b.Ask(Packet{ID: 2, Conn: conn(11, 1001, 443, 1)})
	if l := b.List(1001); len(l) != 1 || l[0].Conn.UID != 1001 {
		t.Errorf("List(1001) = %+v", l)
	}
	if n := b.Close(); n != 2 || b.Len() != 0 || len(rec.resolved) != 2 {
		t.Errorf("Close ended %d", n)
	}
}

func TestConcurrentAsksAndAnswersEveryPacketResolvedOnce(t *testing.T) {
	b, rec, _ := newBroker(Options{MaxGroups: 1000, MaxPerGroup: 1000, MaxPerUID: 1000})
	var wg sync.WaitGroup
	const n = 2000
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				b.Ask(Packet{ID: uint32(i), Conn: conn(10+i%7, 1000, uint16(i%13), uint16(i))})
				for _, g := range b.List(-1) {
					if g.ID%3 == 0 {
						b.Answer(g.ID, ":1.10", false, shared.Verdict{Action: shared.ActionAllow})
					}
				}
			}
		}(w)
	}
	wg.Wait()
	b.Close()
	seen := map[uint32]int{}
	for _, r := range rec.resolved {
		for _, p := range r.pkts {
			seen[p.ID]++
		}
	}
	for i := uint32(0); i < n; i++ {
		if seen[i] != 1 {
			t.Fatalf("packet %d resolved %d times", i, seen[i])
		}
	}
}

func BenchmarkAskJoin(b *testing.B) {
	br := New(Options{Timeout: time.Minute, MaxPerGroup: 1024}, fakeAgents{1000: {":1.10"}}, nopEvents{})
	p := Packet{ID: 1, Conn: conn(10, 1000, 443, 1)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%1000 == 0 {
			br.Close() // keep the group from growing without bound
		}
		br.Ask(p)
	}
}

type nopEvents struct{}

func (nopEvents) Pending(Group)                            {}
func (nopEvents) Resolved(Group, shared.Verdict, []Packet) {}
