// Package promptmodel is the view-model of the tray's prompt window: which
// pending group is shown and how many more wait, the countdown to the
// default action, the arming delay during which keys and clicks do nothing,
// the chosen action, lifetime and scope and the shared.Answer they make, and
// the fact lines to show about a connection.
//
// It is plain Go driven by the window on its one UI goroutine, with the
// time passed in (an injectable clock): it must not import a UI toolkit or
// talk to the daemon.
package promptmodel

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
)

// Defaults of Options.
const (
	DefaultAction   = shared.ActionDeny // Enter alone never lets a connection through
	DefaultLifetime = shared.LifetimeOnce
	DefaultScope    = shared.ScopeExeHostPort
	DefaultArmDelay = time.Second
	// UntilHour is how long lifetime "1 hour" lasts from the answer.
	UntilHour = time.Hour
)

// Options are the preselected choices and the arming delay.
type Options struct {
	Action   shared.Action      // preselected action (Enter answers it); "" = deny
	Lifetime shared.Lifetime    // preselected lifetime; "" = once
	Scope    shared.AnswerScope // preselected scope; "" = exe-host-port
	ArmDelay time.Duration      // keys and clicks ignored after a prompt appears; 0 = DefaultArmDelay, < 0 = none
}

func (o Options) withDefaults() Options {
	if o.Action != shared.ActionAllow && o.Action != shared.ActionReject {
		o.Action = DefaultAction
	}
	if _, err := shared.ParseLifetime(string(o.Lifetime)); err != nil || o.Lifetime == "" {
		o.Lifetime = DefaultLifetime
	}
	if sc, err := shared.ParseAnswerScope(string(o.Scope)); err != nil {
		o.Scope = DefaultScope
	} else {
		o.Scope = sc
	}
	switch {
	case o.ArmDelay == 0:
		o.ArmDelay = DefaultArmDelay
	case o.ArmDelay < 0:
		o.ArmDelay = 0
	}
	return o
}

// Choice is one option of a lifetime or scope choice.
type Choice[T comparable] struct {
	Value T
	Label string
}

// Lifetimes are the lifetime choices, in the order shown. "1 hour" is
// shared.LifetimeUntil with Answer.Until an hour after the answer.
var Lifetimes = []Choice[shared.Lifetime]{
	{shared.LifetimeOnce, "Once"},
	{shared.LifetimeProcess, "Until process exits"},
	{shared.LifetimeUntil, "1 hour"},
	{shared.LifetimeSession, "This session"},
	{shared.LifetimeForever, "Forever"},
}

// Scopes are the scope choices, in the order shown.
var Scopes = []Choice[shared.AnswerScope]{
	{shared.ScopeExeHostPort, "This host and port"},
	{shared.ScopeExeHost, "This host"},
	{shared.ScopeExeAny, "Any host"},
	{shared.ScopeAnyExeHost, "Any app to this host"},
}

// Label is the label of v among choices, or v's text.
func Label[T ~string](choices []Choice[T], v T) string {
	for _, c := range choices {
		if c.Value == v {
			return c.Label
		}
	}
	return string(v)
}

// ValueOf is the value labelled label among choices.
func ValueOf[T comparable](choices []Choice[T], label string) (T, bool) {
	for _, c := range choices {
		if c.Label == label {
			return c.Value, true
		}
	}
	var zero T
	return zero, false
}

// Key is a key the prompt answers to.
type Key int

const (
	KeyAllow  Key = iota + 1 // A: choose allow
	KeyDeny                  // D: choose deny
	KeyEnter                 // answer with the chosen action, lifetime and scope
	KeyEscape                // answer deny once
)

// Model is the prompt window's state. Use it from one goroutine.
type Model struct {
	o Options

	queue   []shared.Pending
	shown   uint64 // ID of the group shown; valid when len(queue) > 0
	armedAt time.Time

	action   shared.Action
	lifetime shared.Lifetime
	scope    shared.AnswerScope
	details  bool
	busy     bool // an answer is on its way to the daemon
	// daemonDefault is what the daemon does with an unanswered
	// connection; "" while not known.
	daemonDefault shared.Action
	message       string // the last answer's trouble, "" if none
}

// New makes a model with nothing waiting.
func New(o Options) *Model {
	m := &Model{o: o.withDefaults()}
	m.resetChoices()
	return m
}

// Options are the model's options with defaults filled in.
func (m *Model) Options() Options { return m.o }

func (m *Model) resetChoices() {
	m.action, m.lifetime, m.scope = m.o.Action, m.o.Lifetime, m.o.Scope
	if len(m.queue) > 0 && !m.LifetimeAvailable(m.lifetime) {
		m.lifetime = shared.LifetimeOnce
	}
}

// SetQueue takes the waiting groups, the first to be shown. When the shown
// group becomes another one (a new prompt), the arming delay starts again
// at now, the message is cleared and the choices go back to their defaults: an answer given to one
// connection never carries over to the next. A newer view of the same group
// (more attempts) changes neither. It reports whether the shown group
// changed.
func (m *Model) SetQueue(q []shared.Pending, now time.Time) (changed bool) {
	m.queue = slices.Clone(q)
	if len(m.queue) == 0 {
		m.shown = 0
		m.busy = false
		return false
	}
	if id := m.queue[0].ID; id != m.shown || m.armedAt.IsZero() {
		m.shown = id
		m.armedAt = now.Add(m.o.ArmDelay)
		m.busy = false
		m.message = ""
		m.resetChoices()
		return true
	}
	return false
}

// Current is the group shown, if any.
func (m *Model) Current() (shared.Pending, bool) {
	if len(m.queue) == 0 {
		return shared.Pending{}, false
	}
	return m.queue[0], true
}

// Waiting is the number of groups waiting, the shown one included.
func (m *Model) Waiting() int { return len(m.queue) }

// MoreText is "3 more" when groups wait behind the shown one, else "".
func (m *Model) MoreText() string {
	if n := len(m.queue) - 1; n > 0 {
		return fmt.Sprintf("%d more", n)
	}
	return ""
}

// ArmLeft is how long keys and clicks are still ignored.
func (m *Model) ArmLeft(now time.Time) time.Duration {
	if len(m.queue) == 0 {
		return 0
	}
	return max(m.armedAt.Sub(now), 0)
}

// Armed says whether keys and clicks answer now.
func (m *Model) Armed(now time.Time) bool {
	return len(m.queue) > 0 && !now.Before(m.armedAt)
}

// Countdown is the time left until the daemon applies the default action
// to the shown group (0 when due or unknown).
func (m *Model) Countdown(now time.Time) time.Duration {
	p, ok := m.Current()
	if !ok || p.Deadline.IsZero() {
		return 0
	}
	return max(p.Deadline.Sub(now), 0)
}

// SetDaemonDefault records the daemon's default action (GetStatus's
// DefaultAction): what happens to a connection nobody answers. "" or an
// action this model does not know leaves it unknown.
func (m *Model) SetDaemonDefault(a shared.Action) {
	switch a {
	case shared.ActionAllow, shared.ActionDeny, shared.ActionReject:
		m.daemonDefault = a
	default:
		m.daemonDefault = ""
	}
}

// DaemonDefault is the daemon's default action, "" when not known.
func (m *Model) DaemonDefault() shared.Action { return m.daemonDefault }

// CountdownText says what happens when, in whole seconds rounded up:
// "Denied in 25 s unless you answer" ("Allowed", "Rejected" by the
// daemon's default action; "Default action" while it is not known).
func (m *Model) CountdownText(now time.Time) string {
	p, ok := m.Current()
	switch {
	case !ok:
		return ""
	case p.Deadline.IsZero():
		return "No deadline known"
	}
	what := "Default action"
	switch m.daemonDefault {
	case shared.ActionAllow:
		what = "Allowed"
	case shared.ActionDeny:
		what = "Denied"
	case shared.ActionReject:
		what = "Rejected"
	}
	d := m.Countdown(now)
	if d <= 0 {
		return what + " now: no answer in time"
	}
	secs := (d + time.Second - 1) / time.Second
	return fmt.Sprintf("%s in %d s unless you answer", what, secs)
}

// Action, Lifetime and Scope are the current choices.
func (m *Model) Action() shared.Action     { return m.action }
func (m *Model) Lifetime() shared.Lifetime { return m.lifetime }
func (m *Model) Scope() shared.AnswerScope { return m.scope }

// SetLifetime chooses a lifetime; one not available for the shown
// connection (LifetimeAvailable) is refused.
func (m *Model) SetLifetime(l shared.Lifetime) bool {
	if !slices.ContainsFunc(Lifetimes, func(c Choice[shared.Lifetime]) bool { return c.Value == l }) || !m.LifetimeAvailable(l) {
		return false
	}
	m.lifetime = l
	return true
}

// SetScope chooses a scope.
func (m *Model) SetScope(s shared.AnswerScope) bool {
	if !slices.ContainsFunc(Scopes, func(c Choice[shared.AnswerScope]) bool { return c.Value == s }) {
		return false
	}
	m.scope = s
	return true
}

// LifetimeAvailable says whether l can be chosen for the shown connection:
// "until process exits" needs a process.
func (m *Model) LifetimeAvailable(l shared.Lifetime) bool {
	if l != shared.LifetimeProcess {
		return true
	}
	p, ok := m.Current()
	return ok && p.Connection.PID > 0
}

// Details says whether the details are shown; ToggleDetails flips it.
func (m *Model) Details() bool  { return m.details }
func (m *Model) ToggleDetails() { m.details = !m.details }

// EnterText says what Enter does now: "Enter: deny once".
func (m *Model) EnterText() string {
	return fmt.Sprintf("Enter: %s %s", m.action, strings.ToLower(Label(Lifetimes, m.lifetime)))
}

// Key handles a key at now. A and D choose the action (they never answer
// alone: a stray key typed into the wrong window must not decide), Enter
// answers with the choices, Escape answers deny once. Within the arming
// delay, while an answer is on its way, or with nothing shown, keys do
// nothing. ok says an answer is to be sent.
func (m *Model) Key(k Key, now time.Time) (a shared.Answer, ok bool) {
	if !m.Armed(now) || m.busy {
		return shared.Answer{}, false
	}
	switch k {
	case KeyAllow:
		m.action = shared.ActionAllow
	case KeyDeny:
		m.action = shared.ActionDeny
	case KeyEnter:
		return m.send(m.answer(m.action, m.lifetime, m.scope, now))
	case KeyEscape:
		return m.send(m.answer(shared.ActionDeny, shared.LifetimeOnce, shared.ScopeExeHostPort, now))
	}
	return shared.Answer{}, false
}

// Click handles a click on the Allow or Deny button at now: it answers
// that action with the chosen lifetime and scope, unless within the arming
// delay or while an answer is on its way.
func (m *Model) Click(action shared.Action, now time.Time) (a shared.Answer, ok bool) {
	if !m.Armed(now) || m.busy {
		return shared.Answer{}, false
	}
	m.action = action
	return m.send(m.answer(action, m.lifetime, m.scope, now))
}

func (m *Model) send(a shared.Answer) (shared.Answer, bool) {
	m.busy = true
	m.message = ""
	return a, true
}

// answer is the answer to the shown group; lifetime "1 hour" ends an hour
// after now.
func (m *Model) answer(action shared.Action, lifetime shared.Lifetime, scope shared.AnswerScope, now time.Time) shared.Answer {
	p, _ := m.Current()
	a := shared.Answer{PendingID: p.ID, Action: action, Lifetime: lifetime, Scope: scope}
	if lifetime == shared.LifetimeUntil {
		a.Until = now.Add(UntilHour)
	}
	return a
}

// Answered records the daemon's reply to the answer sent: "" when it took
// it, else the trouble to show. Keys and clicks work again.
func (m *Model) Answered(trouble string) {
	m.busy = false
	m.message = trouble
}

// Busy says an answer is on its way.
func (m *Model) Busy() bool { return m.busy }

// Message is the trouble with the last answer, "" if none.
func (m *Model) Message() string { return m.message }

// Fact is one line about a connection: a label and its value. Full is
// the whole value when Value is shortened (a long command line), else "".
type Fact struct {
	Label, Value, Full string
}

// MaxValue is the longest value (in characters) a fact line shows; longer
// ones are shortened in the middle (Shorten), with Fact.Full holding them
// whole.
const MaxValue = 80

// Shorten cuts s to at most n characters by taking out its middle
// ("/usr/lib/firefox/firefox -contentproc … -appDir /usr/lib/firefox"):
// both the program and the last arguments stay in sight.
func Shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n || n < 3 {
		return s
	}
	head := (n - 1) / 2
	tail := n - 1 - head
	return strings.TrimRight(string(r[:head]), " ") + "…" + strings.TrimLeft(string(r[len(r)-tail:]), " ")
}

// AppName is the name to show for the connection's application: the
// desktop entry's name when app was found (marked when only the file name
// matched: any program can be called "firefox"), else the Flatpak/snap id,
// else the executable's file name.
func AppName(c shared.Connection, app desktop.App, found bool) string {
	switch {
	case found && app.Name != "" && app.Match == desktop.MatchBasename:
		return app.Name + " (by file name only)"
	case found && app.Name != "":
		return app.Name
	case c.App != "":
		return c.App
	case c.Exe != "":
		return path.Base(c.Exe)
	case c.ExeClaimed != "":
		return path.Base(c.ExeClaimed) + " (unverified)"
	case c.PID == 0:
		return "Unknown program"
	}
	return "pid " + strconv.Itoa(c.PID)
}

// Headline is the one line that says what is asked:
// "curl wants to connect to example.org:443".
func Headline(c shared.Connection, app desktop.App, found bool) string {
	name := AppName(c, app, found)
	if c.Direction == shared.DirectionIn {
		return fmt.Sprintf("%s wants to accept a connection from %s on port %d", name, Remote(c), c.LocalPort)
	}
	return fmt.Sprintf("%s wants to connect to %s", name, RemoteWithPort(c))
}

// Remote is the remote end's first host name, else its address.
func Remote(c shared.Connection) string {
	if len(c.Hosts) > 0 {
		return c.Hosts[0]
	}
	if c.RemoteIP.IsValid() {
		return c.RemoteIP.String()
	}
	return "an unknown address"
}

// RemoteWithPort is Remote with the remote port when there is one.
func RemoteWithPort(c shared.Connection) string {
	if c.RemotePort == 0 {
		return Remote(c)
	}
	r := Remote(c)
	if len(c.Hosts) == 0 && c.RemoteIP.Is6() {
		r = "[" + r + "]"
	}
	return r + ":" + strconv.Itoa(int(c.RemotePort))
}

// Facts are the lines shown about a pending group under the headline,
// grouped so that a glance takes them in:
//
//	Remote   example.org (93.184.216.34) · port 443 · tcp · outgoing
//	Process  /usr/bin/curl · pid 4242 · user alice (1000)
//	Command  curl https://example.org  (shortened in the middle; Full whole)
//	Seen     3 attempts  (only when the group holds more than one)
//
// The application's name is the headline's (Headline).
func Facts(p shared.Pending, app desktop.App, found bool) []Fact {
	c := p.Connection
	remote := "unknown address"
	if c.RemoteIP.IsValid() {
		remote = c.RemoteIP.String()
	}
	if len(c.Hosts) > 0 {
		hosts := strings.Join(c.Hosts[:min(len(c.Hosts), 3)], ", ")
		if n := len(c.Hosts) - 3; n > 0 {
			hosts += fmt.Sprintf(" +%d", n)
		}
		remote = hosts + " (" + remote + ")"
		if c.HostSource == shared.HostFromAny {
			remote += ", named by another user's lookup"
		}
	}
	port := "port " + portText(c.RemotePort)
	if c.Direction == shared.DirectionIn {
		port = "local port " + portText(c.LocalPort)
	}
	proto := string(c.Proto)
	if proto == "" {
		proto = "protocol " + strconv.Itoa(int(c.ProtoNum))
	}
	dir := "outgoing"
	if c.Direction == shared.DirectionIn {
		dir = "incoming"
	}
	fs := []Fact{{Label: "Remote", Value: dots(remote, port, proto, dir)}}

	exe := "unknown program"
	switch {
	case c.Exe != "":
		exe = c.Exe
	case c.ExeClaimed != "":
		exe = c.ExeClaimed + " (unverified)"
	}
	pid := "no process found (attributed to the user only)"
	if c.PID > 0 {
		pid = "pid " + strconv.Itoa(c.PID)
	}
	fs = append(fs, Fact{Label: "Process", Value: dots(Shorten(exe, MaxValue/2), pid, "user "+user(c))})
	if c.Cmdline != "" {
		f := Fact{Label: "Command", Value: Shorten(c.Cmdline, MaxValue)}
		if f.Value != c.Cmdline {
			f.Full = c.Cmdline
		}
		fs = append(fs, f)
	}
	if p.Count > 1 {
		fs = append(fs, Fact{Label: "Seen", Value: strconv.Itoa(p.Count) + " attempts"})
	}
	return fs
}

// DetailFacts are the lines the "Details" toggle adds, four at most:
//
//	Parent    pid 4200 · unit app-gnome-curl-1.scope
//	SHA-256   0123…
//	Found     by the socket's process · app flatpak:… · desktop entry /usr/share/applications/curl.desktop
//	Local     10.0.0.2 port 5555 on eth0 · waiting since 12:00:00
func DetailFacts(p shared.Pending, app desktop.App, found bool) []Fact {
	c := p.Connection
	or := func(s, none string) string {
		if s == "" {
			return none
		}
		return s
	}
	ppid := "parent unknown"
	if c.PPID > 0 {
		ppid = "pid " + strconv.Itoa(c.PPID)
	}
	fs := []Fact{
		{Label: "Parent", Value: dots(ppid, "unit "+Shorten(or(c.Unit, "not known"), MaxValue/2))},
		{Label: "SHA-256", Value: or(c.ExeSHA256, "not known")},
	}
	attr := string(c.Attribution)
	switch c.Attribution {
	case shared.AttributedProcess:
		attr = "by the socket's process"
	case shared.AttributedUIDOnly:
		attr = "by user only: the process could not be found"
	case shared.AttributedNone:
		attr = "not at all: not even a user"
	case "":
		attr = "attribution not said"
	}
	how := []string{attr}
	if c.App != "" {
		how = append(how, "sandboxed app "+c.App)
	}
	if found && app.File != "" {
		how = append(how, "desktop entry "+Shorten(app.File, MaxValue/2))
	}
	fs = append(fs, Fact{Label: "Found", Value: dots(how...)})
	local := "unknown"
	if c.LocalIP.IsValid() {
		local = c.LocalIP.String()
		if c.LocalPort != 0 {
			local += " port " + strconv.Itoa(int(c.LocalPort))
		}
	}
	if c.Iface != "" {
		local += " on " + c.Iface
	}
	l := []string{local}
	if !p.Since.IsZero() {
		l = append(l, "waiting since "+p.Since.Local().Format(time.TimeOnly))
	}
	fs = append(fs, Fact{Label: "Local", Value: dots(l...)})
	return fs
}

// dots joins parts of a fact line with a middle dot.
func dots(parts ...string) string { return strings.Join(parts, " · ") }

func user(c shared.Connection) string {
	switch {
	case c.User != "" && c.UID >= 0:
		return fmt.Sprintf("%s (%d)", c.User, c.UID)
	case c.User != "":
		return c.User
	case c.UID >= 0:
		return strconv.FormatInt(c.UID, 10)
	}
	return "unknown"
}

func portText(p uint16) string {
	if p == 0 {
		return "none"
	}
	return strconv.Itoa(int(p))
}
