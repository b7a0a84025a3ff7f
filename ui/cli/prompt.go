package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/agent"
)

// promptKey is what one key of the prompt answers.
type promptKey struct {
	key      byte
	action   shared.Action
	lifetime shared.Lifetime
	help     string
}

var promptKeys = []promptKey{
	{'a', shared.ActionAllow, shared.LifetimeOnce, "allow once"},
	{'s', shared.ActionAllow, shared.LifetimeSession, "allow for this session"},
	{'A', shared.ActionAllow, shared.LifetimeForever, "allow forever"},
	{'d', shared.ActionDeny, shared.LifetimeOnce, "deny once"},
	{'n', shared.ActionDeny, shared.LifetimeSession, "deny for this session"},
	{'D', shared.ActionDeny, shared.LifetimeForever, "deny forever"},
}

const promptKeyLine = "[a] allow once  [s] allow session  [A] allow forever  [d] deny once  [n] deny session  [D] deny forever  [?] help  [q] quit\n"

func setupPrompt(fs *flag.FlagSet) action {
	scope := fs.String("scope", "exe-host-port", "how far rules made from answers reach: exe-host-port | exe-host | exe-any | any-exe-host")
	return func(ctx context.Context, inv *invocation) error {
		sc, err := shared.ParseAnswerScope(*scope)
		if err != nil {
			return usagef("--scope: %v", err)
		}
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		if f, ok := inv.app.Stdin.(*os.File); ok {
			restore, err := keyMode(f)
			if err != nil {
				return fmt.Errorf("prompt: set up the terminal: %w", err)
			}
			defer restore()
		}
		p := &prompter{app: inv.app, c: c, scope: sc, json: inv.json, w: inv.app.Stdout}
		return p.run(ctx)
	}
}

// prompter is the terminal agent: the agent session's queue of pending
// groups, the first of which is shown and answered from the keyboard.
type prompter struct {
	app   *App
	c     Client
	scope shared.AnswerScope
	json  bool
	w     io.Writer
	s     *agent.Session
}

func (p *prompter) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The terminal prompt needs the daemon now: a missing one is an error
	// (exit code "unreachable"), not something to wait for.
	p.s = agent.New(p.c, agent.Options{})
	if _, err := p.s.Start(ctx); err != nil {
		return fmt.Errorf("prompt: %w", err)
	}
	defer p.s.Close() // unregisters
	keys := make(chan byte)
	go readKeys(p.app.Stdin, keys)

	p.event(map[string]any{"event": "ready"}, "tollgate prompt: waiting for connections to answer (? for help, q to quit)\n")
	p.showCurrent()
	for {
		select {
		case <-ctx.Done():
			return nil
		case in := <-p.s.Inputs():
			ev, err := p.s.Handle(ctx, in)
			switch {
			case errors.Is(err, agent.ErrBusLost):
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("prompt: %w", errDaemonGone)
			case err != nil:
				return fmt.Errorf("prompt: %w", err)
			}
			p.show(ev)
		case k, ok := <-keys:
			if !ok {
				return nil // end of input
			}
			quit, err := p.key(ctx, k)
			if err != nil || quit {
				return err
			}
		}
	}
}

// readKeys sends every byte read from r until it fails or ends.
func readKeys(r io.Reader, out chan<- byte) {
	defer close(out)
	buf := make([]byte, 64)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			out <- b
		}
		if err != nil {
			return
		}
	}
}

// show tells what a change of the session means on the terminal.
func (p *prompter) show(ev agent.Event) {
	switch ev.Kind {
	case agent.EventAdded:
		if p.s.Len() == 1 {
			p.showCurrent()
			return
		}
		cn := ev.Pending.Connection
		p.event(pendingEvent("queued", ev.Pending),
			fmt.Sprintf("  (queued #%d: %s -> %s; %d waiting)\n", ev.ID, process(cn), remote(cn), p.s.Len()-1))
	case agent.EventResolved:
		p.event(map[string]any{"event": "resolved", "id": ev.ID, "action": string(ev.Action)},
			fmt.Sprintf("#%d was decided elsewhere: %s\n", ev.ID, ev.Action))
		if ev.Index == 0 {
			p.showCurrent()
		}
	case agent.EventDaemonGone:
		p.event(map[string]any{"event": "daemon-gone"},
			"\ntollgated left the bus: its pending connections got the default action; waiting for it to come back\n")
	case agent.EventDaemonBack:
		p.event(map[string]any{"event": "daemon-back"}, "\ntollgated is back; registered again as its agent\n")
		p.showCurrent()
	}
}

func pendingEvent(name string, pd shared.Pending) map[string]any {
	f := pd.Fields()
	f["event"] = name
	return f
}

// event writes one event: a JSON line with --json, else the text.
func (p *prompter) event(fields map[string]any, text string) {
	if p.json {
		writeJSONLine(p.w, fields)
		return
	}
	io.WriteString(p.w, text)
}

func (p *prompter) showCurrent() {
	pd, ok := p.s.Current()
	if !ok {
		return
	}
	cn := pd.Connection
	if p.json {
		p.event(pendingEvent("pending", pd), "")
		return
	}
	w := p.w
	fmt.Fprintf(w, "\n--- connection #%d", pd.ID)
	if pd.Count > 1 {
		fmt.Fprintf(w, " (%d attempts)", pd.Count)
	}
	if !pd.Deadline.IsZero() {
		fmt.Fprintf(w, ", default action in %s", p.app.left(pd.Deadline))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  %s, user %s\n", process(cn), userOf(cn))
	if cn.App != "" {
		fmt.Fprintf(w, "  app: %s\n", cn.App)
	}
	if cn.Cmdline != "" {
		fmt.Fprintf(w, "  cmdline: %s\n", cn.Cmdline)
	}
	dir := "->"
	if cn.Direction == shared.DirectionIn {
		dir = "<-"
	}
	fmt.Fprintf(w, "  %s %s %s\n", dir, remote(cn), cn.Proto)
	if n := p.s.Len() - 1; n > 0 {
		fmt.Fprintf(w, "  (%d more waiting)\n", n)
	}
	fmt.Fprintf(w, "answer (scope %s): ", p.scope)
}

// key handles one key; quit says the prompt should end.
func (p *prompter) key(ctx context.Context, k byte) (quit bool, err error) {
	switch k {
	case '\n', '\r', ' ', '\t':
		return false, nil
	case 'q', 4: // q or Ctrl-D
		p.event(map[string]any{"event": "quit"}, "\nbye\n")
		return true, nil
	case '?', 'h':
		if !p.json {
			fmt.Fprint(p.w, "\n"+promptKeyLine)
			fmt.Fprintf(p.w, "rules made by answers have scope %s (tollgate prompt --scope to change)\n", p.scope)
		}
		p.showCurrent()
		return false, nil
	}
	i := slices.IndexFunc(promptKeys, func(pk promptKey) bool { return pk.key == k })
	if i < 0 {
		if !p.json {
			fmt.Fprintf(p.w, "\nunknown key %q\n%s", k, promptKeyLine)
		}
		return false, nil
	}
	pd, ok := p.s.Current()
	if !ok {
		if !p.json {
			fmt.Fprintln(p.w, "\nnothing to answer")
		}
		return false, nil
	}
	pk := promptKeys[i]
	a := shared.Answer{PendingID: pd.ID, Action: pk.action, Lifetime: pk.lifetime, Scope: p.scope}
	err = p.s.Answer(ctx, a) // the group leaves the queue when answered or gone
	switch {
	case err == nil:
		f := answerFields(a)
		f["event"] = "answered"
		p.event(f, fmt.Sprintf("%s\n#%d: %s\n", string(k), pd.ID, pk.help))
	case errors.Is(err, dbus.ErrNotFound):
		p.event(map[string]any{"event": "gone", "id": pd.ID},
			fmt.Sprintf("%s\n#%d is no longer pending\n", string(k), pd.ID))
	default:
		code, msg := classify(err)
		if code == ExitUnreachable || code == ExitInterrupted {
			return true, err
		}
		p.event(map[string]any{"event": "error", "id": pd.ID, "error": msg, "exit_code": code},
			fmt.Sprintf("%s\n#%d: %s\n", string(k), pd.ID, msg))
		// Keep it: the user may try another answer.
		p.showCurrent()
		return false, nil
	}
	p.showCurrent()
	return false, nil
}
