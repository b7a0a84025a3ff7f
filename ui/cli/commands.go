package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// action is what a command does once its flags are parsed.
type action = func(ctx context.Context, inv *invocation) error

func commands() []*command {
	return []*command{
		{name: "status", summary: "show the mode, counts and kernel queue statistics", setup: setupStatus},
		{name: "mode", args: "[enforcing|monitor|disabled]", pos: posArgs{0, 1, "at most one mode"}, summary: "show the mode, or set it (admin)", setup: setupMode},
		{name: "rules", summary: "manage rules", subs: []*command{
			{name: "list", args: "[-q]", summary: "list the rules you can see (-q: ids only)", setup: setupRulesList},
			{name: "show", args: "ID", pos: ruleID, summary: "show every field of a rule", setup: setupRulesShow},
			{name: "add", args: "--action A [MATCH FLAGS...]", pos: posArgs{0, 0, "only flags (did you forget -- before a value?)"}, summary: "add a rule (flags are the shared field names)", setup: setupRulesAdd},
			{name: "edit", args: "ID [FIELD FLAGS...]", pos: ruleID, summary: "change fields of a rule (an empty value removes a field)", setup: setupRulesEdit},
			{name: "rm", args: "ID", pos: ruleID, summary: "delete a rule", setup: setupRulesRm},
			{name: "enable", args: "ID", pos: ruleID, summary: "enable a rule", setup: setupRulesEnable(true)},
			{name: "disable", args: "ID", pos: ruleID, summary: "disable a rule", setup: setupRulesEnable(false)},
			{name: "explain", args: "[LOG-ID] [--exe PATH] [--host NAME] [--ip ADDR] [--port N] [--proto P] [--uid N]...", pos: posArgs{0, 1, "at most a connection id from tollgate log --json"}, summary: "say which rules match a connection (described, or from the log) and which decides", setup: setupRulesExplain},
			{name: "export", args: "[FILE]", pos: posArgs{0, 1, "at most a FILE"}, summary: "write your forever rules as a TOML rules file (stdout without FILE)", setup: setupRulesExport},
			{name: "import", args: "FILE|-", pos: posArgs{1, 1, "a FILE (or - for stdin)"}, summary: "store the rules of a TOML rules file as system rules (admin; idempotent)", setup: setupRulesImport},
		}},
		{name: "pending", args: "[-q]", summary: "list connections waiting for an answer (-q: ids only)", setup: setupPending},
		{name: "answer", args: "ID allow|deny|reject [--lifetime L] [--until TIME] [--scope S] [--system]", pos: posArgs{2, 2, "ID and allow|deny|reject"}, summary: "answer a pending connection", setup: setupAnswer},
		{name: "log", args: "[--follow] [--limit N] [--verdict allow|deny|reject] [--exe PATH] [--host NAME] [--since TIME]", summary: "show recent connections, newest last", setup: setupLog},
		{name: "prompt", args: "[--scope S]", summary: "be the terminal agent: answer each pending connection from the keyboard", setup: setupPrompt},
		{name: "completion", args: "bash|zsh|fish", pos: posArgs{1, 1, "bash, zsh or fish"}, summary: "print a shell completion script", setup: setupCompletion},
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// tableWriter aligns tab-separated cells and drops trailing blanks.
type tableWriter struct {
	*tabwriter.Writer
	buf *bytes.Buffer
	out io.Writer
}

func table(w io.Writer) *tableWriter {
	buf := new(bytes.Buffer)
	return &tableWriter{Writer: tabwriter.NewWriter(buf, 0, 4, 2, ' ', 0), buf: buf, out: w}
}

func (t *tableWriter) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for line := range strings.Lines(t.buf.String()) {
		b.WriteString(strings.TrimRight(line, " \n"))
		b.WriteByte('\n')
	}
	t.buf.Reset()
	_, err := io.WriteString(t.out, b.String())
	return err
}

// ---- status, mode

func setupStatus(fs *flag.FlagSet) action {
	return func(ctx context.Context, inv *invocation) error {
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		s, err := c.GetStatus(ctx)
		if err != nil {
			return fmt.Errorf("get status: %w", err)
		}
		w := inv.app.Stdout
		if inv.json {
			return writeJSON(w, s.Fields())
		}
		tw := table(w)
		fmt.Fprintf(tw, "mode:\t%s\n", s.Mode)
		fmt.Fprintf(tw, "version:\t%s\n", s.Version)
		fmt.Fprintf(tw, "default action:\t%s\n", s.DefaultAction)
		fmt.Fprintf(tw, "rules:\t%d\n", s.Rules)
		fmt.Fprintf(tw, "pending:\t%d\n", s.Pending)
		fmt.Fprintf(tw, "agents:\t%d\n", s.Agents)
		fmt.Fprintf(tw, "decided:\t%d (allowed %d, denied %d)\n", s.Decided, s.Allowed, s.Denied)
		fmt.Fprintf(tw, "kernel queue:\twaiting %d, dropped %d (queue full), dropped %d (socket buffer full)\n",
			s.QueueWaiting, s.QueueDropped, s.QueueUserDropped)
		return tw.Flush()
	}
}

var modes = []string{"enforcing", "monitor", "disabled"}

func setupMode(fs *flag.FlagSet) action {
	return func(ctx context.Context, inv *invocation) error {
		if len(inv.args) == 1 && !slices.Contains(modes, inv.args[0]) {
			return usagef("unknown mode %q (want enforcing, monitor or disabled)", inv.args[0])
		}
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		if len(inv.args) == 0 {
			s, err := c.GetStatus(ctx)
			if err != nil {
				return fmt.Errorf("get mode: %w", err)
			}
			if inv.json {
				return writeJSON(inv.app.Stdout, map[string]any{"mode": s.Mode})
			}
			fmt.Fprintln(inv.app.Stdout, s.Mode)
			return nil
		}
		mode := inv.args[0]
		if err := c.SetMode(ctx, mode); err != nil {
			return fmt.Errorf("set mode %s: %w", mode, err)
		}
		if inv.json {
			return writeJSON(inv.app.Stdout, map[string]any{"mode": mode})
		}
		fmt.Fprintf(inv.app.Stdout, "mode set to %s\n", mode)
		return nil
	}
}

// printedList prints what every list command prints alike: with --json
// each item's field map, with -q each item's id on a line of its own, and
// for an empty list the note empty. done says the list is printed (err is
// then the result); otherwise the caller prints its table.
func printedList[T any](inv *invocation, quiet bool, items []T, fields func(T) map[string]any, id func(T) any, empty string) (done bool, err error) {
	w := inv.app.Stdout
	switch {
	case inv.json:
		out := make([]map[string]any, len(items))
		for i, it := range items {
			out[i] = fields(it)
		}
		return true, writeJSON(w, out)
	case quiet:
		for _, it := range items {
			fmt.Fprintln(w, id(it))
		}
		return true, nil
	case len(items) == 0:
		fmt.Fprintln(w, empty)
		return true, nil
	}
	return false, nil
}

// ---- rules

func setupRulesList(fs *flag.FlagSet) action {
	quiet := fs.Bool("q", false, "print rule ids only")
	return func(ctx context.Context, inv *invocation) error {
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		rules, err := c.ListRules(ctx)
		if err != nil {
			return fmt.Errorf("list rules: %w", err)
		}
		if done, err := printedList(inv, *quiet, rules, shared.Rule.Fields, func(r shared.Rule) any { return r.ID },
			"no rules (add one: tollgate rules add --action allow --exe PATH ...)"); done {
			return err
		}
		tw := table(inv.app.Stdout)
		fmt.Fprintln(tw, "ID\tACTION\tLIFETIME\tOWNER\tENABLED\tHITS\tMATCH\tNAME")
		for _, r := range rules {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Action, inv.app.lifetime(r),
				owner(r.Owner), yesNo(r.Enabled), r.Hits, matchSummary(r), r.Name)
		}
		return tw.Flush()
	}
}

func (a *App) lifetime(r shared.Rule) string {
	if r.Lifetime == shared.LifetimeUntil && !r.Until.IsZero() {
		return "until " + a.timeString(r.Until)
	}
	return string(r.Lifetime)
}

func (a *App) timeString(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(a.Location).Format("2006-01-02 15:04:05")
}

func owner(uid uint32) string {
	if uid == shared.OwnerSystem {
		return "system"
	}
	return strconv.FormatUint(uint64(uid), 10)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// matchSummary is the rule's match fields as field=value, in shared order.
func matchSummary(r shared.Rule) string {
	f := r.Fields()
	var parts []string
	for _, k := range shared.MatchFieldNames() {
		if v, ok := f[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if len(parts) == 0 {
		return "(anything)"
	}
	return strings.Join(parts, " ")
}

// findRule fetches the rule with the given id.
func findRule(ctx context.Context, c Client, id string) (shared.Rule, error) {
	r, err := c.GetRule(ctx, id)
	if err != nil {
		return shared.Rule{}, fmt.Errorf("get rule: %w", err)
	}
	return r, nil
}

func setupRulesShow(fs *flag.FlagSet) action {
	return func(ctx context.Context, inv *invocation) error {
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		r, err := findRule(ctx, c, inv.args[0])
		if err != nil {
			return err
		}
		f := r.Fields()
		if inv.json {
			return writeJSON(inv.app.Stdout, f)
		}
		tw := table(inv.app.Stdout)
		for _, k := range shared.FieldNames() {
			if v, ok := f[k]; ok {
				fmt.Fprintf(tw, "%s:\t%v\n", k, v)
			}
		}
		return tw.Flush()
	}
}

func setupRulesAdd(fs *flag.FlagSet) action {
	rf := addRuleFlags(fs)
	return func(ctx context.Context, inv *invocation) error {
		if len(rf.order) == 0 {
			return usagef("rules add needs at least --action (see tollgate rules add --help)")
		}
		f := map[string]any{}
		if err := rf.apply(f, inv.app.Now()); err != nil {
			return err
		}
		if _, ok := f["action"]; !ok {
			return &shared.FieldError{Field: "action", Msg: "required (--action allow|deny|reject)"}
		}
		if f["lifetime"] == string(shared.LifetimeProcess) {
			return &shared.FieldError{Field: "lifetime", Msg: "process rules are made by answering a prompt (the daemon ties them to that process); use session, until or forever"}
		}
		if _, err := checkRule(f); err != nil {
			return err
		}
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		id, err := c.AddRuleFields(ctx, f)
		if err != nil {
			return fmt.Errorf("add rule: %w", err)
		}
		if inv.json {
			return writeJSON(inv.app.Stdout, map[string]any{"id": id})
		}
		fmt.Fprintf(inv.app.Stdout, "added rule %s\n", id)
		return nil
	}
}

func setupRulesEdit(fs *flag.FlagSet) action {
	rf := addRuleFlags(fs)
	return func(ctx context.Context, inv *invocation) error {
		if len(rf.order) == 0 {
			return usagef("rules edit needs at least one field flag (see tollgate rules edit --help)")
		}
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		old, err := findRule(ctx, c, inv.args[0])
		if err != nil {
			return err
		}
		f := writable(old)
		if err := rf.apply(f, inv.app.Now()); err != nil {
			return err
		}
		r, err := checkRule(f)
		if err != nil {
			return err
		}
		r.ID = old.ID
		if err := c.UpdateRule(ctx, old.ID, r); err != nil {
			return fmt.Errorf("update rule %s: %w", old.ID, err)
		}
		if inv.json {
			return writeJSON(inv.app.Stdout, r.Fields())
		}
		fmt.Fprintf(inv.app.Stdout, "updated rule %s\n", old.ID)
		return nil
	}
}

func setupRulesRm(fs *flag.FlagSet) action {
	return func(ctx context.Context, inv *invocation) error {
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		id := inv.args[0]
		if err := c.DeleteRule(ctx, id); err != nil {
			return fmt.Errorf("delete rule %s: %w", id, err)
		}
		if inv.json {
			return writeJSON(inv.app.Stdout, map[string]any{"deleted": id})
		}
		fmt.Fprintf(inv.app.Stdout, "deleted rule %s\n", id)
		return nil
	}
}

func setupRulesEnable(enable bool) func(fs *flag.FlagSet) action {
	word := "disabled"
	if enable {
		word = "enabled"
	}
	return func(fs *flag.FlagSet) action {
		return func(ctx context.Context, inv *invocation) error {
			c, err := inv.dial(ctx)
			if err != nil {
				return err
			}
			r, err := findRule(ctx, c, inv.args[0])
			if err != nil {
				return err
			}
			if r.Enabled != enable {
				r.Enabled = enable
				if err := c.UpdateRule(ctx, r.ID, r); err != nil {
					return fmt.Errorf("update rule %s: %w", r.ID, err)
				}
			}
			if inv.json {
				return writeJSON(inv.app.Stdout, map[string]any{"id": r.ID, "enabled": enable})
			}
			fmt.Fprintf(inv.app.Stdout, "rule %s %s\n", r.ID, word)
			return nil
		}
	}
}

func setupRulesExport(fs *flag.FlagSet) action {
	return func(ctx context.Context, inv *invocation) error {
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		text, err := c.ExportRules(ctx)
		if err != nil {
			return fmt.Errorf("export rules: %w", err)
		}
		if len(inv.args) == 0 || inv.args[0] == "-" {
			if inv.json {
				return writeJSON(inv.app.Stdout, map[string]any{"toml": text})
			}
			_, err := io.WriteString(inv.app.Stdout, text)
			return err
		}
		file := inv.args[0]
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			return fmt.Errorf("export rules: %w", err)
		}
		if inv.json {
			return writeJSON(inv.app.Stdout, map[string]any{"file": file, "bytes": len(text)})
		}
		fmt.Fprintf(inv.app.Stdout, "wrote %s (%d bytes)\n", file, len(text))
		return nil
	}
}

func setupRulesImport(fs *flag.FlagSet) action {
	return func(ctx context.Context, inv *invocation) error {
		file := inv.args[0]
		var r io.Reader = inv.app.Stdin
		if file != "-" {
			fh, err := os.Open(file)
			if err != nil {
				return fmt.Errorf("import rules: %w", err)
			}
			defer fh.Close()
			r = fh
		}
		data, err := io.ReadAll(io.LimitReader(r, dbus.MaxImportBytes+1))
		if err != nil {
			return fmt.Errorf("import rules: read %s: %w", file, err)
		}
		if len(data) > dbus.MaxImportBytes {
			return usagef("import rules: %s is larger than %d bytes", file, dbus.MaxImportBytes)
		}
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		n, err := c.ImportRules(ctx, string(data))
		if err != nil {
			return fmt.Errorf("import rules from %s: %w", file, err)
		}
		if inv.json {
			return writeJSON(inv.app.Stdout, map[string]any{"added": n})
		}
		fmt.Fprintf(inv.app.Stdout, "added %d rule(s) from %s\n", n, file)
		return nil
	}
}

// ---- pending, answer

// remote is a connection's remote end: host:port (ip), or ip:port.
func remote(c shared.Connection) string {
	ip := "?"
	if c.RemoteIP.IsValid() {
		ip = c.RemoteIP.String()
	}
	if len(c.Hosts) > 0 {
		s := c.Hosts[0]
		if c.RemotePort != 0 {
			s += ":" + strconv.Itoa(int(c.RemotePort))
		}
		if c.RemoteIP.IsValid() {
			s += " (" + ip + ")"
		}
		// A name the process did not look up itself is flagged.
		switch c.HostSource {
		case shared.HostFromUser:
			s += " [name: another process of this user]"
		case shared.HostFromAny:
			s += " [name: another user's lookup, not trusted]"
		}
		return s
	}
	if c.RemotePort == 0 {
		return ip
	}
	if c.RemoteIP.Is6() {
		ip = "[" + ip + "]"
	}
	return ip + ":" + strconv.Itoa(int(c.RemotePort))
}

// process names a connection's origin: its executable, or its uid alone.
// A path the daemon could not verify is shown as claimed, never as the
// executable.
func process(c shared.Connection) string {
	if c.Exe == "" && c.ExeClaimed != "" {
		c.Exe = c.ExeClaimed + " (unverified)"
	}
	switch {
	case c.Exe != "" && c.PID != 0:
		return fmt.Sprintf("%s (pid %d)", c.Exe, c.PID)
	case c.Exe != "":
		return c.Exe
	case c.PID != 0:
		return fmt.Sprintf("pid %d", c.PID)
	}
	return "(process unknown)"
}

func userOf(c shared.Connection) string {
	switch {
	case c.User != "" && c.UID >= 0:
		return fmt.Sprintf("%s (%d)", c.User, c.UID)
	case c.UID >= 0:
		return strconv.FormatInt(c.UID, 10)
	}
	return "?"
}

func (a *App) left(deadline time.Time) string {
	if deadline.IsZero() {
		return "-"
	}
	d := deadline.Sub(a.Now()).Round(time.Second)
	if d <= 0 {
		return "now"
	}
	return d.String()
}

func setupPending(fs *flag.FlagSet) action {
	quiet := fs.Bool("q", false, "print pending ids only")
	return func(ctx context.Context, inv *invocation) error {
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		ps, err := c.ListPending(ctx)
		if err != nil {
			return fmt.Errorf("list pending connections: %w", err)
		}
		if done, err := printedList(inv, *quiet, ps, shared.Pending.Fields, func(p shared.Pending) any { return p.ID },
			"no pending connections"); done {
			return err
		}
		tw := table(inv.app.Stdout)
		fmt.Fprintln(tw, "ID\tCOUNT\tUSER\tPROCESS\tDIR\tPROTO\tREMOTE\tEXPIRES IN")
		for _, p := range ps {
			cn := p.Connection
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Count, userOf(cn), process(cn),
				cn.Direction, cn.Proto, remote(cn), inv.app.left(p.Deadline))
		}
		return tw.Flush()
	}
}

func setupAnswer(fs *flag.FlagSet) action {
	lifetime := fs.String("lifetime", "once", "once | session | process | until | forever")
	until := fs.String("until", "", "end time for lifetime until (RFC 3339, 2006-01-02 15:04, or a duration like 2h)")
	scope := fs.String("scope", "exe-host-port", "exe-host-port | exe-host | exe-any | any-exe-host")
	system := fs.Bool("system", false, "make a system rule instead of one for the connection's user (admins)")
	return func(ctx context.Context, inv *invocation) error {
		id, err := strconv.ParseUint(inv.args[0], 10, 64)
		if err != nil {
			return usagef("pending id %q is not a number (tollgate pending lists them)", inv.args[0])
		}
		opts := map[string]any{}
		lt := *lifetime
		if *until != "" {
			t, err := parseWhen(*until, inv.app.Now(), inv.app.Location, true)
			if err != nil {
				return usagef("--until: %v", err)
			}
			opts["until"] = t.UTC().Format(time.RFC3339Nano)
			if !flagGiven(fs, "lifetime") {
				lt = string(shared.LifetimeUntil)
			}
		}
		if *system {
			opts["system"] = true
		}
		a, err := shared.ParseAnswer(id, inv.args[1], lt, *scope, opts)
		if err != nil {
			return usagef("%v", err)
		}
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		if err := c.Answer(ctx, a); err != nil {
			return fmt.Errorf("answer %d: %w", id, err)
		}
		if inv.json {
			return writeJSON(inv.app.Stdout, answerFields(a))
		}
		fmt.Fprintf(inv.app.Stdout, "answered %d: %s %s (%s)\n", id, a.Action, a.Lifetime, a.Scope)
		return nil
	}
}

func answerFields(a shared.Answer) map[string]any {
	f := a.Options()
	f["id"] = a.PendingID
	f["action"] = string(a.Action)
	f["lifetime"] = string(a.Lifetime)
	f["scope"] = string(a.Scope)
	return f
}

func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}

// ---- log

func setupLog(fs *flag.FlagSet) action {
	follow := fs.Bool("follow", false, "keep printing new connections until interrupted")
	fs.BoolVar(follow, "f", false, "same as --follow")
	limit := fs.Int("limit", 20, "at most this many entries (first batch when following)")
	verdict := fs.String("verdict", "", "only this verdict: allow | deny | reject")
	exe := fs.String("exe", "", "only this executable")
	host := fs.String("host", "", "only connections to this host name")
	since := fs.String("since", "", "only entries since TIME (RFC 3339, 2006-01-02 15:04, or a duration back like 1h)")
	return func(ctx context.Context, inv *invocation) error {
		if *limit < 1 || *limit > shared.MaxLogLimit {
			return usagef("--limit %d: want 1-%d", *limit, shared.MaxLogLimit)
		}
		filter := shared.LogFilter{Limit: *limit, Exe: *exe, Host: *host}
		if *verdict != "" {
			a, err := shared.ParseAction(*verdict)
			if err != nil {
				return usagef("--verdict: %v", err)
			}
			filter.Action = a
		}
		if *since != "" {
			t, err := parseWhen(*since, inv.app.Now(), inv.app.Location, false)
			if err != nil {
				return usagef("--since: %v", err)
			}
			filter.Since = t
		}
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		return inv.app.log(ctx, inv, c, filter, *follow)
	}
}

func (a *App) log(ctx context.Context, inv *invocation, c Client, filter shared.LogFilter, follow bool) error {
	entries, err := c.RecentConnections(ctx, filter)
	if err != nil {
		return fmt.Errorf("read the connection log: %w", err)
	}
	slices.Reverse(entries) // oldest first: the newest ends next to the prompt
	w := a.Stdout
	if !follow {
		if inv.json {
			out := make([]map[string]any, len(entries))
			for i, e := range entries {
				out[i] = e.Fields()
			}
			return writeJSON(w, out)
		}
		if len(entries) == 0 {
			fmt.Fprintln(w, "no connections logged")
			return nil
		}
	}
	if !inv.json {
		fmt.Fprintf(w, logFormat, "TIME", "VERDICT", "USER", "PROCESS", "REMOTE", "RULE")
	}
	// Following: ask again for entries since the newest seen; entries
	// with that same time that were printed already are skipped by id.
	var newest time.Time
	seen := map[uint64]bool{}
	print := func(es []shared.LogEntry) error {
		for _, e := range es {
			t := e.Connection.Time
			if t.Before(newest) || (t.Equal(newest) && seen[e.Connection.ID]) {
				continue
			}
			if t.After(newest) {
				newest = t
				clear(seen)
			}
			seen[e.Connection.ID] = true
			if inv.json {
				if err := writeJSONLine(w, e.Fields()); err != nil {
					return err
				}
				continue
			}
			if err := a.logLine(w, e); err != nil {
				return err
			}
		}
		return nil
	}
	if err := print(entries); err != nil {
		return err
	}
	if !follow {
		return nil
	}
	tick := time.NewTicker(a.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		f := filter
		f.Limit = shared.MaxLogLimit
		if !newest.IsZero() {
			f.Since = newest
		}
		es, err := c.RecentConnections(ctx, f)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read the connection log: %w", err)
		}
		slices.Reverse(es)
		if err := print(es); err != nil {
			return err
		}
	}
}

const logFormat = "%-19s  %-8s  %-12s  %-32s  %-30s  %s\n"

func (a *App) logLine(w io.Writer, e shared.LogEntry) error {
	v := string(e.Verdict.Action)
	if e.Verdict.Monitor {
		v += "*"
	}
	rule := e.Verdict.RuleID
	if rule == "" {
		rule = "(default)"
	}
	cn := e.Connection
	_, err := fmt.Fprintf(w, logFormat, a.timeString(cn.Time), v, userOf(cn), process(cn),
		remote(cn)+" "+string(cn.Proto), rule)
	return err
}
