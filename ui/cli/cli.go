// Package cli is the logic of `tollgate`, the command-line client of the
// Tollgate daemon: argument parsing, the commands, their human tables and
// JSON output, exit codes, the terminal prompt agent and shell completion.
//
// It owns how a user and a script talk to the daemon from a shell. It talks
// to the daemon only through the Client interface (implemented by
// *dbus.Client) and speaks the types of package shared; it must not import
// the daemon (daemon/...) or any UI toolkit, and it holds no policy: what a
// caller may do is the daemon's decision.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// Client is what the CLI needs of the daemon. *dbus.Client implements it;
// tests use a fake.
type Client interface {
	GetStatus(ctx context.Context) (shared.Status, error)
	SetMode(ctx context.Context, mode string) error
	ListRules(ctx context.Context) ([]shared.Rule, error)
	GetRule(ctx context.Context, id string) (shared.Rule, error)
	AddRuleFields(ctx context.Context, f map[string]any) (string, error)
	UpdateRule(ctx context.Context, id string, r shared.Rule) error
	DeleteRule(ctx context.Context, id string) error
	ExportRules(ctx context.Context) (string, error)
	ImportRules(ctx context.Context, toml string) (int, error)
	RegisterAgent(ctx context.Context) error
	UnregisterAgent(ctx context.Context) error
	ListPending(ctx context.Context) ([]shared.Pending, error)
	Answer(ctx context.Context, a shared.Answer) error
	RecentConnections(ctx context.Context, f shared.LogFilter) ([]shared.LogEntry, error)
	Explain(ctx context.Context, conn shared.Connection) (shared.Explanation, error)
	Signals(ctx context.Context) (<-chan dbus.Signal, error)
	Close() error
}

// Exit codes. Scripts may rely on them; `tollgate --help` lists them.
const (
	ExitOK            = 0
	ExitError         = 1   // any other failure
	ExitUsage         = 2   // bad command line or invalid field value (locally or from the daemon)
	ExitNotAuthorized = 3   // the daemon (or the bus policy) refused the caller
	ExitNotFound      = 4   // no such rule or pending connection
	ExitUnreachable   = 5   // no bus, or the daemon is not on it
	ExitBusy          = 6   // the daemon asked to try again later (rate limit, full)
	ExitInterrupted   = 130 // interrupted (Ctrl-C)
)

// BusEnv is the environment variable that overrides the bus address.
const BusEnv = "TOLLGATE_BUS_ADDRESS"

// App runs tollgate commands. The zero value is not usable: use New.
type App struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// Dial connects to the daemon on the bus at address ("" = the system
	// bus).
	Dial func(ctx context.Context, address string) (Client, error)
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// Now is the clock (time.Now); Location is where times are shown.
	Now      func() time.Time
	Location *time.Location
	// PollInterval is how often `log --follow` asks for new entries.
	PollInterval time.Duration
}

// New returns an App on the given streams that dials the daemon over D-Bus.
func New(stdin io.Reader, stdout, stderr io.Writer) *App {
	return &App{
		Stdin:        stdin,
		Stdout:       stdout,
		Stderr:       stderr,
		Dial:         DialDBus,
		Getenv:       os.Getenv,
		Now:          time.Now,
		Location:     time.Local,
		PollInterval: time.Second,
	}
}

// DialDBus connects a *dbus.Client to the bus at address.
func DialDBus(ctx context.Context, address string) (Client, error) {
	c, err := dbus.Dial(ctx, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// usageError is a bad command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// unreachableError is a failure to reach the bus or the daemon.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// errDaemonGone: the signal stream ended (bus connection lost).
var errDaemonGone = errors.New("lost the connection to the bus")

// D-Bus errors that mean nobody answers at the daemon's name.
var unreachableNames = []string{
	"org.freedesktop.DBus.Error.ServiceUnknown",
	"org.freedesktop.DBus.Error.NameHasNoOwner",
	"org.freedesktop.DBus.Error.NoReply",
	"org.freedesktop.DBus.Error.Disconnected",
	"org.freedesktop.DBus.Error.NoServer",
	"org.freedesktop.DBus.Error.UnknownObject",
	"org.freedesktop.DBus.Error.UnknownMethod",
	"org.freedesktop.DBus.Error.UnknownInterface",
}

// classify gives an error's exit code and the message to show, which says
// what to do about it.
func classify(err error) (int, string) {
	var ue *usageError
	var fe *shared.FieldError
	var de *dbus.Error
	var unreach *unreachableError
	isDBusName := func(names ...string) bool {
		if de == nil {
			return false
		}
		for _, n := range names {
			if de.Name == n {
				return true
			}
		}
		return false
	}
	errors.As(err, &de)
	if de != nil {
		// Say the daemon's own words once, after what was being done.
		err = &detailError{msg: daemonDetail(err, de), err: err}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return ExitInterrupted, "interrupted"
	case errors.As(err, &ue):
		return ExitUsage, ue.msg + " (see tollgate --help)"
	case errors.As(err, &fe):
		return ExitUsage, "invalid rule: " + fe.Error()
	case errors.Is(err, dbus.ErrInvalidArgument):
		return ExitUsage, "the daemon refused the request: " + err.Error()
	case errors.Is(err, dbus.ErrNotAuthorized), isDBusName("org.freedesktop.DBus.Error.AccessDenied"):
		return ExitNotAuthorized, "not authorized: " + err.Error() +
			"\nsystem rules, mode changes and imports need admin rights (sudo, or polkit org.tollgate.manage);" +
			" answering needs the connection's own user or an admin"
	case errors.Is(err, dbus.ErrNotFound):
		return ExitNotFound, "not found: " + err.Error() + " (tollgate rules list / tollgate pending show what exists)"
	case errors.Is(err, dbus.ErrBusy):
		return ExitBusy, "the daemon is busy: " + err.Error() + " (try again in a moment)"
	case isDBusName(unreachableNames...), errors.Is(err, errDaemonGone):
		return ExitUnreachable, "the daemon is not running: sudo systemctl start tollgated (" + err.Error() + ")"
	case errors.As(err, &unreach):
		return ExitUnreachable, "cannot reach the bus: " + err.Error() +
			" (is dbus running? --bus ADDRESS or " + BusEnv + " pick another bus)"
	}
	return ExitError, err.Error()
}

// detailError replaces an error's text, keeping its chain for errors.Is.
type detailError struct {
	msg string
	err error
}

func (e *detailError) Error() string { return e.msg }
func (e *detailError) Unwrap() error { return e.err }

// daemonDetail is err's text with the daemon's message said once: what the
// CLI was doing, then the message without the client's method prefix
// ("SetMode: ") or a repeated error kind ("not authorized: ").
func daemonDetail(err error, de *dbus.Error) string {
	full, msg := err.Error(), de.Error()
	i := strings.LastIndex(full, msg)
	if i < 0 {
		return full
	}
	prefix := strings.TrimSuffix(full[:i], ": ")
	last := prefix
	if j := strings.LastIndex(prefix, ": "); j >= 0 {
		last = prefix[j+2:]
	}
	if last != "" && !strings.ContainsAny(last, " :") && last[0] >= 'A' && last[0] <= 'Z' {
		prefix = strings.TrimSuffix(strings.TrimSuffix(prefix, last), ": ")
	}
	for _, kind := range []error{dbus.ErrInvalidArgument, dbus.ErrNotAuthorized, dbus.ErrNotFound, dbus.ErrBusy} {
		msg = strings.TrimPrefix(msg, kind.Error()+": ")
	}
	if prefix == "" {
		return msg
	}
	return prefix + ": " + msg
}

// invocation is one parsed command line.
type invocation struct {
	app  *App
	json bool
	bus  string
	args []string // positional arguments after the command words

	client Client
}

// client dials the daemon on first use.
func (inv *invocation) dial(ctx context.Context) (Client, error) {
	if inv.client != nil {
		return inv.client, nil
	}
	addr := inv.bus
	if addr == "" {
		addr = inv.app.Getenv(BusEnv)
	}
	c, err := inv.app.Dial(ctx, addr)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, &unreachableError{err: err}
	}
	inv.client = c
	return c, nil
}

// command is one command (or group of subcommands) of the CLI.
type command struct {
	name    string
	args    string  // synopsis of arguments and flags
	pos     posArgs // positional arguments it takes (none when zero)
	summary string
	// setup registers the command's flags and returns its action.
	setup func(fs *flag.FlagSet) func(ctx context.Context, inv *invocation) error
	subs  []*command
}

// Run runs the command line args (without the program name) and returns the
// exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	inv := &invocation{app: a}
	defer func() {
		if inv.client != nil {
			inv.client.Close()
		}
	}()
	err := a.run(ctx, inv, args)
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	code, msg := classify(err)
	if inv.json {
		writeJSON(a.Stderr, map[string]any{"error": msg, "exit_code": code})
	} else {
		fmt.Fprintf(a.Stderr, "tollgate: %s\n", msg)
	}
	return code
}

func (a *App) run(ctx context.Context, inv *invocation, args []string) error {
	cmds := commands()
	path := []string{}
	var cmd *command
	list := cmds
	rest := args
	// Global flags may come before the command words too.
	for {
		for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
			switch g := rest[0]; {
			case g == "-h" || g == "--help" || g == "-help":
				if cmd == nil {
					a.usage(a.Stdout)
				} else {
					a.commandUsage(a.Stdout, path, cmd)
				}
				return flag.ErrHelp
			case g == "--json" || g == "-json":
				inv.json = true
				rest = rest[1:]
			case g == "--bus" || g == "-bus":
				if len(rest) < 2 {
					return usagef("--bus needs an address")
				}
				inv.bus, rest = rest[1], rest[2:]
			case strings.HasPrefix(g, "--bus=") || strings.HasPrefix(g, "-bus="):
				inv.bus, rest = g[strings.Index(g, "=")+1:], rest[1:]
			default:
				if cmd == nil || len(cmd.subs) > 0 {
					return usagef("unknown flag %s before the command", g)
				}
				goto parsed
			}
		}
		if cmd != nil && len(cmd.subs) == 0 {
			break
		}
		if len(rest) == 0 {
			if cmd == nil {
				a.usage(a.Stderr)
				return usagef("no command given")
			}
			return usagef("%s needs a subcommand: %s", strings.Join(path, " "), names(cmd.subs))
		}
		next := find(list, rest[0])
		if next == nil {
			if cmd == nil {
				return usagef("unknown command %q", rest[0])
			}
			return usagef("unknown subcommand %q of %s (want %s)", rest[0], strings.Join(path, " "), names(cmd.subs))
		}
		cmd, path, rest, list = next, append(path, next.name), rest[1:], next.subs
	}
parsed:
	fs := flag.NewFlagSet("tollgate "+strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&inv.json, "json", inv.json, "machine-readable JSON output")
	fs.StringVar(&inv.bus, "bus", inv.bus, "D-Bus address")
	action := cmd.setup(fs)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.commandUsage(a.Stdout, path, cmd)
			return err
		}
		return usagef("%s: %v", strings.Join(path, " "), err)
	}
	if n := len(pos); n < cmd.pos.min || n > cmd.pos.max {
		what := cmd.pos.what
		if what == "" {
			what = "no arguments"
		}
		return usagef("want %s, got %d argument(s)", what, n)
	}
	inv.args = pos
	return action(ctx, inv)
}

// parseInterspersed parses flags anywhere among the positional arguments
// (`tollgate rules rm ID --json`); after "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func find(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

func names(cmds []*command) string {
	var s []string
	for _, c := range cmds {
		s = append(s, c.name)
	}
	return strings.Join(s, ", ")
}

// posArgs says how many positional arguments a command takes (the run
// checks, before the command's action), and what they are.
type posArgs struct {
	min, max int
	what     string
}

var ruleID = posArgs{1, 1, "a rule ID"}

const helpTail = `Global flags (anywhere on the line):
  --json          JSON output with the shared field names (errors as JSON on stderr);
                  streaming commands (log --follow, prompt) write one object per line
  --bus ADDRESS   D-Bus address (default: $TOLLGATE_BUS_ADDRESS, else the system bus)

Exit codes:
  0   ok
  1   error
  2   usage: bad command line or invalid field value
  3   not authorized (run with sudo, or get polkit's org.tollgate.manage)
  4   not found (no such rule or pending connection)
  5   daemon unreachable (no bus, or tollgated not running)
  6   busy: the daemon asked to try again later
  130 interrupted

Examples:
  tollgate rules add --action allow --exe /usr/bin/curl --host example.org --port 443 --proto tcp --lifetime forever
  tollgate answer 7 deny --lifetime forever --scope exe-host
  tollgate log --follow --verdict deny
  source <(tollgate completion bash)
`

func (a *App) usage(w io.Writer) {
	fmt.Fprintln(w, "tollgate: control the Tollgate application firewall")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: tollgate [--json] [--bus ADDRESS] COMMAND [ARGS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	var walk func(prefix string, cmds []*command)
	walk = func(prefix string, cmds []*command) {
		for _, c := range cmds {
			if len(c.subs) > 0 {
				walk(prefix+c.name+" ", c.subs)
				continue
			}
			line := prefix + c.name
			if c.args != "" {
				line += " " + c.args
			}
			fmt.Fprintf(w, "  %s\n      %s\n", line, c.summary)
		}
	}
	walk("", commands())
	fmt.Fprintln(w)
	fmt.Fprint(w, helpTail)
}

func (a *App) commandUsage(w io.Writer, path []string, cmd *command) {
	fmt.Fprintf(w, "Usage: tollgate %s", strings.Join(path, " "))
	if len(cmd.subs) > 0 {
		fmt.Fprintf(w, " {%s}\n", strings.Join(strings.Split(names(cmd.subs), ", "), "|"))
		return
	}
	if cmd.args != "" {
		fmt.Fprintf(w, " %s", cmd.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", cmd.summary)
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	cmd.setup(fs)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "_") {
			return // alias with the shared field name
		}
		if first {
			fmt.Fprintln(w, "\nFlags:")
			first = false
		}
		usage := f.Usage
		switch f.DefValue {
		case "", "false", "0", "-1":
		default:
			usage += " (default " + f.DefValue + ")"
		}
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		fmt.Fprintf(w, "  %-14s %s\n", dash+f.Name, usage)
	})
	fmt.Fprintln(w, "\nGlobal flags: --json, --bus ADDRESS. Exit codes: see tollgate --help.")
}
