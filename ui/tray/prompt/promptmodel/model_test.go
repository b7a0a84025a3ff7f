package promptmodel

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func pend(id uint64) shared.Pending {
	return shared.Pending{ID: id, Count: 1, Since: t0, Deadline: t0.Add(30 * time.Second),
		Connection: shared.Connection{Direction: shared.DirectionOut, Proto: shared.ProtoTCP, UID: 1000, User: "alice",
			PID: 4242, PPID: 1, Exe: "/usr/bin/curl", Cmdline: "curl https://example.org", RemoteIP: netip.MustParseAddr("93.184.216.34"),
			RemotePort: 443, Hosts: []string{"example.org"}, ExeSHA256: "ab12", Unit: "app-foo.scope", Attribution: shared.AttributedProcess}}
}

func TestDefaults(t *testing.T) {
	m := New(Options{})
	o := m.Options()
	if o.Action != shared.ActionDeny || o.Lifetime != shared.LifetimeOnce || o.Scope != shared.ScopeExeHostPort || o.ArmDelay != time.Second {
		t.Errorf("defaults: %+v", o)
	}
	if o := New(Options{Action: "bogus", Lifetime: "bogus", Scope: "bogus", ArmDelay: -1}).Options(); o.Action != shared.ActionDeny ||
		o.Lifetime != shared.LifetimeOnce || o.Scope != shared.ScopeExeHostPort || o.ArmDelay != 0 {
		t.Errorf("bad options not replaced by defaults: %+v", o)
	}
}

// at is a point in time relative to when the prompt appeared at t0.
type event struct {
	at     time.Duration
	key    Key                // or
	click  shared.Action      // or
	queue  []shared.Pending   // or (nil: none)
	life   shared.Lifetime    // choose a lifetime first
	scope  shared.AnswerScope // choose a scope first
	answer *shared.Answer     // want this answer (nil: none)
	result string             // then the daemon replies (only with answer)
}

func TestAnswers(t *testing.T) {
	forever := shared.Answer{PendingID: 1, Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Scope: shared.ScopeExeHostPort}
	tests := []struct {
		name   string
		opts   Options
		events []event
	}{
		{"keys during the arming delay do nothing", Options{}, []event{
			{at: 0, key: KeyEscape},
			{at: 500 * time.Millisecond, key: KeyEnter},
			{at: 999 * time.Millisecond, click: shared.ActionAllow},
			{at: 1000 * time.Millisecond, key: KeyEscape, answer: &shared.Answer{PendingID: 1, Action: shared.ActionDeny, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}},
		}},
		{"A chooses, Enter confirms", Options{}, []event{
			{at: 2 * time.Second, key: KeyAllow},
			{at: 2 * time.Second, life: shared.LifetimeForever, key: KeyEnter, answer: &forever},
		}},
		{"D after A chooses deny", Options{}, []event{
			{at: 2 * time.Second, key: KeyAllow},
			{at: 2 * time.Second, key: KeyDeny},
			{at: 2 * time.Second, scope: shared.ScopeExeHost, key: KeyEnter, answer: &shared.Answer{PendingID: 1, Action: shared.ActionDeny, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHost}},
		}},
		{"Enter answers the preselected action", Options{Action: shared.ActionAllow, Lifetime: shared.LifetimeSession, Scope: shared.ScopeExeAny}, []event{
			{at: 2 * time.Second, key: KeyEnter, answer: &shared.Answer{PendingID: 1, Action: shared.ActionAllow, Lifetime: shared.LifetimeSession, Scope: shared.ScopeExeAny}},
		}},
		{"click Allow with Forever", Options{}, []event{
			{at: 3 * time.Second, life: shared.LifetimeForever, click: shared.ActionAllow, answer: &forever},
		}},
		{"1 hour ends an hour after the answer", Options{}, []event{
			{at: 5 * time.Second, life: shared.LifetimeUntil, scope: shared.ScopeAnyExeHost, click: shared.ActionDeny, answer: &shared.Answer{PendingID: 1, Action: shared.ActionDeny,
				Lifetime: shared.LifetimeUntil, Until: t0.Add(5*time.Second + time.Hour), Scope: shared.ScopeAnyExeHost}},
		}},
		{"until process exits", Options{ArmDelay: -1}, []event{
			{at: 0, life: shared.LifetimeProcess, click: shared.ActionAllow, answer: &shared.Answer{PendingID: 1, Action: shared.ActionAllow, Lifetime: shared.LifetimeProcess, Scope: shared.ScopeExeHostPort}},
		}},
		{"no second answer while one is on its way; a refused one can be retried", Options{}, []event{
			{at: 2 * time.Second, click: shared.ActionAllow, answer: &shared.Answer{PendingID: 1, Action: shared.ActionAllow, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}},
			{at: 2 * time.Second, key: KeyEscape},
			{at: 2 * time.Second, click: shared.ActionDeny},
		}},
		{"after a refusal keys work again", Options{}, []event{
			{at: 2 * time.Second, click: shared.ActionAllow, answer: &shared.Answer{PendingID: 1, Action: shared.ActionAllow, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}, result: "not authorized"},
			{at: 2 * time.Second, key: KeyEscape, answer: &shared.Answer{PendingID: 1, Action: shared.ActionDeny, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}},
		}},
		{"a new prompt arms again and resets the choices", Options{}, []event{
			{at: 2 * time.Second, life: shared.LifetimeForever, key: KeyAllow},
			{at: 3 * time.Second, queue: []shared.Pending{pend(2)}},
			{at: 3500 * time.Millisecond, key: KeyEnter},
			{at: 4 * time.Second, key: KeyEnter, answer: &shared.Answer{PendingID: 2, Action: shared.ActionDeny, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}},
		}},
		{"a newer view of the same group does not re-arm", Options{}, []event{
			{at: 2 * time.Second, key: KeyAllow},
			{at: 3 * time.Second, queue: []shared.Pending{func() shared.Pending { p := pend(1); p.Count = 7; return p }()}},
			{at: 3 * time.Second, key: KeyEnter, answer: &shared.Answer{PendingID: 1, Action: shared.ActionAllow, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHostPort}},
		}},
		{"nothing shown: keys do nothing", Options{}, []event{
			{at: 0, queue: []shared.Pending{}},
			{at: 5 * time.Second, key: KeyEscape},
			{at: 5 * time.Second, click: shared.ActionAllow},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(tt.opts)
			if !m.SetQueue([]shared.Pending{pend(1), pend(9)}, t0) {
				t.Fatal("first prompt not reported as a change")
			}
			for i, ev := range tt.events {
				now := t0.Add(ev.at)
				if ev.queue != nil {
					m.SetQueue(ev.queue, now)
				}
				if ev.life != "" && !m.SetLifetime(ev.life) {
					t.Fatalf("event %d: lifetime %s refused", i, ev.life)
				}
				if ev.scope != "" && !m.SetScope(ev.scope) {
					t.Fatalf("event %d: scope %s refused", i, ev.scope)
				}
				var a shared.Answer
				var ok bool
				switch {
				case ev.key != 0:
					a, ok = m.Key(ev.key, now)
				case ev.click != "":
					a, ok = m.Click(ev.click, now)
				}
				if ok != (ev.answer != nil) {
					t.Fatalf("event %d: answered %v (%+v), want %v", i, ok, a, ev.answer != nil)
				}
				if ok && a != *ev.answer {
					t.Fatalf("event %d: answer %+v, want %+v", i, a, *ev.answer)
				}
				if ok && ev.result != "" {
					m.Answered(ev.result)
					if m.Message() != ev.result || m.Busy() {
						t.Fatalf("event %d: message %q busy %v", i, m.Message(), m.Busy())
					}
				}
			}
		})
	}
}

func TestQueueAndCountdown(t *testing.T) {
	m := New(Options{ArmDelay: 2 * time.Second})
	if _, ok := m.Current(); ok || m.MoreText() != "" || m.CountdownText(t0) != "" {
		t.Fatal("empty model shows something")
	}
	m.SetQueue([]shared.Pending{pend(1), pend(2), pend(3), pend(4)}, t0)
	for _, tt := range []struct {
		at        time.Duration
		countdown string
		armLeft   time.Duration
	}{
		{0, "Default action in 30s", 2 * time.Second},
		{1500 * time.Millisecond, "Default action in 29s", 500 * time.Millisecond}, // 28.5s rounds up
		{2 * time.Second, "Default action in 28s", 0},
		{29*time.Second + time.Millisecond, "Default action in 1s", 0},
		{30 * time.Second, "Default action now", 0},
		{45 * time.Second, "Default action now", 0},
	} {
		now := t0.Add(tt.at)
		if got := m.CountdownText(now); got != tt.countdown {
			t.Errorf("at %v: %q, want %q", tt.at, got, tt.countdown)
		}
		if got := m.ArmLeft(now); got != tt.armLeft {
			t.Errorf("at %v: arm left %v, want %v", tt.at, got, tt.armLeft)
		}
	}
	if got := m.MoreText(); got != "3 more" {
		t.Errorf("more: %q", got)
	}
	m.SetQueue([]shared.Pending{pend(1), pend(4)}, t0)
	if got := m.MoreText(); got != "1 more" || m.Waiting() != 2 {
		t.Errorf("more: %q waiting %d", got, m.Waiting())
	}
	p := pend(5)
	p.Deadline = time.Time{}
	m.SetQueue([]shared.Pending{p}, t0)
	if got := m.CountdownText(t0); got != "No deadline known" || m.MoreText() != "" {
		t.Errorf("no deadline: %q, more %q", got, m.MoreText())
	}
}

func TestProcessLifetimeNeedsAProcess(t *testing.T) {
	m := New(Options{Lifetime: shared.LifetimeProcess})
	p := pend(1)
	p.Connection.PID = 0
	p.Connection.Attribution = shared.AttributedUIDOnly
	m.SetQueue([]shared.Pending{p}, t0)
	if m.Lifetime() != shared.LifetimeOnce {
		t.Errorf("preselected process lifetime kept without a process: %s", m.Lifetime())
	}
	if m.SetLifetime(shared.LifetimeProcess) || m.LifetimeAvailable(shared.LifetimeProcess) {
		t.Error("process lifetime offered without a process")
	}
	m.SetQueue([]shared.Pending{pend(2)}, t0)
	if m.Lifetime() != shared.LifetimeProcess || !m.SetLifetime(shared.LifetimeProcess) {
		t.Error("process lifetime refused with a process")
	}
	if m.SetLifetime("bogus") || m.SetScope("bogus") {
		t.Error("unknown choice accepted")
	}
}

func TestFacts(t *testing.T) {
	p := pend(1)
	p.Count = 3
	got := Facts(p, desktop.App{}, false)
	want := []Fact{
		{"Application", "curl"},
		{"Executable", "/usr/bin/curl"},
		{"Command line", "curl https://example.org"},
		{"Process id", "4242"},
		{"User", "alice (1000)"},
		{"Remote host", "example.org"},
		{"Remote address", "93.184.216.34"},
		{"Port", "443"},
		{"Protocol", "tcp"},
		{"Direction", "outgoing"},
		{"Attempts", "3"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("facts:\n got %v\nwant %v", got, want)
	}
	if h := Headline(p.Connection, desktop.App{}, false); h != "curl wants to connect to example.org:443" {
		t.Errorf("headline %q", h)
	}

	// Unverified executable, no process, names from someone else, inbound.
	u := pend(2)
	u.Connection = shared.Connection{Direction: shared.DirectionIn, Proto: shared.ProtoUDP, UID: -1, GID: -1,
		ExeClaimed: "/tmp/fake", RemoteIP: netip.MustParseAddr("2001:db8::1"), LocalPort: 5353,
		Hosts: []string{"a.example", "b.example"}, HostSource: shared.HostFromAny, Attribution: shared.AttributedUIDOnly}
	f := map[string]string{}
	for _, x := range Facts(u, desktop.App{}, false) {
		f[x.Label] = x.Value
	}
	for k, v := range map[string]string{
		"Application": "fake (unverified)", "Executable": "/tmp/fake (unverified)", "Process id": "not found (attributed to the user only)",
		"User": "unknown", "Remote host": "a.example, b.example (named by another user's lookup)", "Local port": "5353",
		"Direction": "incoming", "Protocol": "udp", "Attempts": "1",
	} {
		if f[k] != v {
			t.Errorf("%s: %q, want %q", k, f[k], v)
		}
	}
	if _, ok := f["Command line"]; ok {
		t.Error("empty command line shown")
	}
	if h := Headline(u.Connection, desktop.App{}, false); h != "fake (unverified) wants to accept a connection from a.example on port 5353" {
		t.Errorf("headline %q", h)
	}
	noName := pend(3)
	noName.Connection.Hosts = nil
	noName.Connection.RemoteIP = netip.MustParseAddr("2001:db8::2")
	if h := Headline(noName.Connection, desktop.App{}, false); h != "curl wants to connect to [2001:db8::2]:443" {
		t.Errorf("headline %q", h)
	}

	// A desktop entry names the app; a file-name-only match says so.
	app := desktop.App{Name: "Firefox", File: "/usr/share/applications/firefox.desktop", Match: desktop.MatchExe}
	if n := AppName(p.Connection, app, true); n != "Firefox" {
		t.Errorf("app name %q", n)
	}
	app.Match = desktop.MatchBasename
	if n := AppName(p.Connection, app, true); n != "Firefox (by file name only)" {
		t.Errorf("app name %q", n)
	}
	flat := p.Connection
	flat.App = "flatpak:org.example.App"
	if n := AppName(flat, desktop.App{}, false); n != "flatpak:org.example.App" {
		t.Errorf("app name %q", n)
	}

	d := map[string]string{}
	for _, x := range DetailFacts(p, app, true) {
		d[x.Label] = x.Value
	}
	for k, v := range map[string]string{"Parent process id": "1", "SHA-256": "ab12", "Cgroup / unit": "app-foo.scope",
		"Attribution": "by the socket's process", "Desktop entry": "/usr/share/applications/firefox.desktop"} {
		if d[k] != v {
			t.Errorf("detail %s: %q, want %q", k, d[k], v)
		}
	}
}

func TestChoiceLabels(t *testing.T) {
	for _, c := range Lifetimes {
		if v, ok := ValueOf(Lifetimes, Label(Lifetimes, c.Value)); !ok || v != c.Value {
			t.Errorf("lifetime %s does not round-trip", c.Value)
		}
	}
	for _, c := range Scopes {
		if v, ok := ValueOf(Scopes, Label(Scopes, c.Value)); !ok || v != c.Value {
			t.Errorf("scope %s does not round-trip", c.Value)
		}
	}
	if _, ok := ValueOf(Scopes, "nope"); ok {
		t.Error("unknown label found")
	}
	m := New(Options{})
	if got := m.EnterText(); got != "Enter: deny once" {
		t.Errorf("enter text %q", got)
	}
}
