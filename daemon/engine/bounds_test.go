package engine

import (
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/attribution"
	"github.com/tollgate-fw/tollgate/daemon/pending"
	"github.com/tollgate-fw/tollgate/daemon/queue"
	"github.com/tollgate-fw/tollgate/shared"
)

// agentsFor entitles one agent per listed uid.
type agentsFor map[int64]string

func (a agentsFor) For(uid int64) []string {
	if n, ok := a[uid]; ok {
		return []string{n}
	}
	return nil
}

// toEngine hands the broker's verdicts to the engine, as the service does.
type toEngine struct{ e *Engine }

func (t toEngine) Pending(pending.Group) {}
func (t toEngine) Resolved(_ pending.Group, v shared.Verdict, pkts []pending.Packet) {
	t.e.Resolve(pkts, v)
}

// The pending bounds through the engine and the real broker: past the
// attempts of one prompt, past one user's prompts and past all prompts,
// the packet gets the default at once (it is never held), while what is
// within the bounds stays held until its answer; another user's prompt is
// not crowded out by the first user's.
func TestPastThePendingBoundsTheDefaultAppliesAtOnce(t *testing.T) {
	h := newHarness(t, Options{}, nil)
	const (
		user2Port = 40010
		user3Port = 40011
	)
	h.att.procs[user2Port] = attribution.Process{PID: 200, Exe: "/usr/bin/x", UID: 1001}
	h.att.procs[user3Port] = attribution.Process{PID: 300, Exe: "/usr/bin/y", UID: 1002}
	b := pending.New(pending.Options{Timeout: time.Hour, MaxGroups: 2, MaxPerUID: 1, MaxPerGroup: 2, Default: shared.ActionDeny},
		agentsFor{1000: ":1.a", 1001: ":1.b", 1002: ":1.c"}, toEngine{h.e})
	h.e.SetAsker(b)

	// attempts waits until uid's prompts hold n attempts in all.
	attempts := func(uid int64, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := 0
			for _, g := range b.List(uid) {
				got += g.Count
			}
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("uid %d's prompts hold %d attempts, want %d", uid, got, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	h.send(1, wgetPort, 443) // uid 1000: a prompt
	attempts(1000, 1)
	h.send(2, wgetPort, 443) // the same question: joins it
	attempts(1000, 2)
	h.send(3, wgetPort, 443) // a third attempt: past MaxPerGroup
	if v := h.q.wait(t, 3); v != vDrop {
		t.Errorf("attempt past MaxPerGroup: %+v, want the default (drop)", v)
	}
	h.send(4, wgetPort, 80) // another question of uid 1000: past MaxPerUID
	if v := h.q.wait(t, 4); v != vDrop {
		t.Errorf("prompt past MaxPerUID: %+v, want the default (drop)", v)
	}
	h.e.Handle(queue.Packet{ID: 5, Payload: tcpSYN(user2Port, 443), UID: 1001, GID: 1001, OutDev: 2}) // another user: not crowded out
	attempts(1001, 1)
	h.e.Handle(queue.Packet{ID: 6, Payload: tcpSYN(user3Port, 443), UID: 1002, GID: 1002, OutDev: 2}) // a third prompt: past MaxGroups
	if v := h.q.wait(t, 6); v != vDrop {
		t.Errorf("prompt past MaxGroups: %+v, want the default (drop)", v)
	}
	if got := len(b.List(-1)); got != 2 {
		t.Errorf("%d open prompts, want the bound 2", got)
	}
	for _, id := range []uint32{1, 2, 5} {
		if got := h.q.get(id); len(got) != 0 {
			t.Fatalf("held packet %d got a verdict before any answer: %+v", id, got)
		}
	}
	// The answer gives every held attempt of the prompt its verdict.
	for _, g := range b.List(1000) {
		if _, err := b.Answer(g.ID, ":1.a", false, shared.Verdict{Action: shared.ActionAllow, Reason: "answered"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []uint32{1, 2} {
		if v := h.q.wait(t, id); v != vAccept {
			t.Errorf("answered packet %d: %+v", id, v)
		}
	}
	if got := len(b.List(-1)); got != 1 {
		t.Errorf("%d open prompts after the answer, want 1 (the other user's)", got)
	}
	if held := h.e.Stats().Held; held != 1 {
		t.Errorf("%d packets held after the answer, want 1", held)
	}
}
