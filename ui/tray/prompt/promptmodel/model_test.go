package promptmodel

import (
	"net/netip"
	"slices"
	"strings"
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
		{0, "Default action in 30 s unless you answer", 2 * time.Second},
		{1500 * time.Millisecond, "Default action in 29 s unless you answer", 500 * time.Millisecond}, // 28.5s rounds up
		{2 * time.Second, "Default action in 28 s unless you answer", 0},
		{29*time.Second + time.Millisecond, "Default action in 1 s unless you answer", 0},
		{30 * time.Second, "Default action now: no answer in time", 0},
		{45 * time.Second, "Default action now: no answer in time", 0},
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

func TestCountdownNamesTheDefault(t *testing.T) {
	m := New(Options{})
	m.SetQueue([]shared.Pending{pend(1)}, t0)
	at := t0.Add(18 * time.Second)
	for _, tt := range []struct {
		def  shared.Action
		want string
	}{
		{shared.ActionDeny, "Denied in 12 s unless you answer"},
		{shared.ActionReject, "Rejected in 12 s unless you answer"},
		{shared.ActionAllow, "Allowed in 12 s unless you answer"},
		{"", "Default action in 12 s unless you answer"},
		{"bogus", "Default action in 12 s unless you answer"},
	} {
		m.SetDaemonDefault(tt.def)
		if got := m.CountdownText(at); got != tt.want {
			t.Errorf("default %q: %q, want %q", tt.def, got, tt.want)
		}
	}
	m.SetDaemonDefault(shared.ActionReject)
	if got := m.CountdownText(t0.Add(time.Minute)); got != "Rejected now: no answer in time" {
		t.Errorf("due: %q", got)
	}
	// The daemon's default is not the preselected answer.
	if m.Action() != shared.ActionDeny || m.DaemonDefault() != shared.ActionReject {
		t.Errorf("action %s, daemon default %s", m.Action(), m.DaemonDefault())
	}
}

func TestShorten(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"0123456789", 10, "0123456789"},
		{"0123456789a", 10, "0123…6789a"},
		{"/usr/lib/firefox/firefox -contentproc -childID 12 -isForBrowser -appDir /usr/lib/firefox/browser", 40,
			"/usr/lib/firefox/fi…/lib/firefox/browser"},
		{"spaces   around   the   cut", 9, "spac…cut"},
		{"ääääääääää", 5, "ää…ää"},
		{"abc", 2, "abc"},
	} {
		got := Shorten(tt.in, tt.n)
		if got != tt.want {
			t.Errorf("Shorten(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
		if n := len([]rune(got)); n > max(tt.n, len([]rune(tt.in))) || (len([]rune(tt.in)) > tt.n && tt.n >= 3 && n > tt.n) {
			t.Errorf("Shorten(%q, %d): %d characters", tt.in, tt.n, n)
		}
	}
}

func TestFacts(t *testing.T) {
	p := pend(1)
	p.Count = 3
	got := Facts(p, desktop.App{}, false)
	want := []Fact{
		{Label: "Remote", Value: "example.org (93.184.216.34) · port 443 · tcp · outgoing"},
		{Label: "Process", Value: "/usr/bin/curl · pid 4242 · user alice (1000)"},
		{Label: "Command", Value: "curl https://example.org"},
		{Label: "Seen", Value: "3 attempts"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("facts:\n got %q\nwant %q", got, want)
	}
	if h := Headline(p.Connection, desktop.App{}, false); h != "curl wants to connect to example.org:443" {
		t.Errorf("headline %q", h)
	}
	// One attempt is not worth a line; a long command line is shortened
	// in the middle, kept whole in Full.
	p.Count = 1
	long := "/usr/lib/firefox/firefox -contentproc -childID 12 -isForBrowser -prefsLen 31234 -prefMapSize 244787 -parentBuildID 20241120 -appDir /usr/lib/firefox/browser 4242 true tab"
	p.Connection.Cmdline = long
	got = Facts(p, desktop.App{}, false)
	if len(got) != 3 || got[2].Label != "Command" || got[2].Full != long || len([]rune(got[2].Value)) != MaxValue ||
		!strings.HasPrefix(got[2].Value, "/usr/lib/firefox/firefox -contentproc") || !strings.HasSuffix(got[2].Value, "browser 4242 true tab") {
		t.Errorf("facts with a long command line: %q", got)
	}

	// Unverified executable, no process, names from someone else, inbound.
	u := pend(2)
	u.Connection = shared.Connection{Direction: shared.DirectionIn, Proto: shared.ProtoUDP, UID: -1, GID: -1,
		ExeClaimed: "/tmp/fake", RemoteIP: netip.MustParseAddr("2001:db8::1"), LocalPort: 5353,
		Hosts: []string{"a.example", "b.example", "c.example", "d.example", "e.example"}, HostSource: shared.HostFromAny, Attribution: shared.AttributedUIDOnly}
	got = Facts(u, desktop.App{}, false)
	want = []Fact{
		{Label: "Remote", Value: "a.example, b.example, c.example +2 (2001:db8::1), named by another user's lookup · local port 5353 · udp · incoming"},
		{Label: "Process", Value: "/tmp/fake (unverified) · no process found (attributed to the user only) · user unknown"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("facts:\n got %q\nwant %q", got, want)
	}
	u.Connection.Hosts = []string{"a.example"}
	if h := Headline(u.Connection, desktop.App{}, false); h != "fake (unverified) wants to accept a connection from a.example on port 5353" {
		t.Errorf("headline %q", h)
	}
	noName := pend(3)
	noName.Connection.Hosts = nil
	noName.Connection.RemoteIP = netip.MustParseAddr("2001:db8::2")
	if h := Headline(noName.Connection, desktop.App{}, false); h != "curl wants to connect to [2001:db8::2]:443" {
		t.Errorf("headline %q", h)
	}
	if f := Facts(noName, desktop.App{}, false); f[0].Value != "2001:db8::2 · port 443 · tcp · outgoing" {
		t.Errorf("remote without a name: %q", f[0].Value)
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

	p.Connection.LocalIP, p.Connection.LocalPort, p.Connection.Iface = netip.MustParseAddr("10.0.0.2"), 40000, "eth0"
	p.Connection.App = "flatpak:org.example.App"
	got = DetailFacts(p, app, true)
	want = []Fact{
		{Label: "Parent", Value: "pid 1 · unit app-foo.scope"},
		{Label: "SHA-256", Value: "ab12"},
		{Label: "Found", Value: "by the socket's process · sandboxed app flatpak:org.example.App · desktop entry /usr/share/applications/firefox.desktop"},
		{Label: "Local", Value: "10.0.0.2 port 40000 on eth0 · waiting since " + t0.Local().Format(time.TimeOnly)},
	}
	if !slices.Equal(got, want) {
		t.Errorf("details:\n got %q\nwant %q", got, want)
	}
	if d := DetailFacts(shared.Pending{Connection: shared.Connection{UID: -1}}, desktop.App{}, false); len(d) != 4 ||
		d[0].Value != "parent unknown · unit not known" || d[1].Value != "not known" || d[2].Value != "attribution not said" || d[3].Value != "unknown" {
		t.Errorf("details of nothing known: %q", d)
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
