package cli

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// connFlags describe a connection for `rules explain`, with the shared
// field names where a rule has the same field.
type connFlags struct {
	exe, sha, cmdline, unit, iface, app *string
	uid, gid                            *int64
	direction, proto, ip                *string
	port, localPort                     *uint
	hosts                               []string
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	c := &connFlags{
		exe:       fs.String("exe", "", "executable path of the process"),
		sha:       fs.String("exe-sha256", "", "sha256 of the executable"),
		cmdline:   fs.String("cmdline", "", "command line"),
		unit:      fs.String("unit", "", "cgroup path or systemd unit"),
		iface:     fs.String("iface", "", "interface"),
		app:       fs.String("app", "", "flatpak:<id> or snap:<name>"),
		uid:       fs.Int64("uid", -1, "user id of the socket (others than root: always their own)"),
		gid:       fs.Int64("gid", -1, "group id of the socket"),
		direction: fs.String("direction", "out", "out | in"),
		proto:     fs.String("proto", "tcp", "tcp | udp | icmp"),
		ip:        fs.String("ip", "", "remote address"),
		port:      fs.Uint("port", 0, "remote port"),
		localPort: fs.Uint("local-port", 0, "local port"),
	}
	fs.Func("host", "a name the remote address was resolved from (repeatable)", func(s string) error {
		c.hosts = append(c.hosts, s)
		return nil
	})
	return c
}

func (c *connFlags) connection() (shared.Connection, error) {
	conn := shared.Connection{
		Exe: *c.exe, ExeSHA256: *c.sha, Cmdline: *c.cmdline, Unit: *c.unit, Iface: *c.iface, App: *c.app,
		UID: *c.uid, GID: *c.gid, Hosts: c.hosts,
	}
	var err error
	if conn.Direction, err = shared.ParseDirection(*c.direction); err != nil {
		return conn, &shared.FieldError{Field: "direction", Msg: err.Error()}
	}
	if conn.Proto, err = shared.ParseProto(*c.proto); err != nil {
		return conn, &shared.FieldError{Field: "proto", Msg: err.Error()}
	}
	if *c.ip != "" {
		if conn.RemoteIP, err = netip.ParseAddr(*c.ip); err != nil {
			return conn, &shared.FieldError{Field: "ip", Msg: fmt.Sprintf("%q is not an address", *c.ip)}
		}
	}
	for _, p := range []struct {
		name string
		v    uint
		dst  *uint16
	}{{"port", *c.port, &conn.RemotePort}, {"local_port", *c.localPort, &conn.LocalPort}} {
		if p.v > 65535 {
			return conn, &shared.FieldError{Field: p.name, Msg: fmt.Sprintf("%d is not a port", p.v)}
		}
		*p.dst = uint16(p.v)
	}
	if conn.UID < -1 || conn.UID > 1<<32-1 {
		return conn, &shared.FieldError{Field: "uid", Msg: fmt.Sprintf("%d is not a uid", conn.UID)}
	}
	if conn.GID < -1 || conn.GID > 1<<32-1 {
		return conn, &shared.FieldError{Field: "gid", Msg: fmt.Sprintf("%d is not a gid", conn.GID)}
	}
	return conn, nil
}

func setupRulesExplain(fs *flag.FlagSet) action {
	cf := addConnFlags(fs)
	return func(ctx context.Context, inv *invocation) error {
		conn, err := cf.connection()
		if err != nil {
			return err
		}
		c, err := inv.dial(ctx)
		if err != nil {
			return err
		}
		if len(inv.args) == 1 {
			if conn, err = loggedConnection(ctx, c, inv.args[0]); err != nil {
				return err
			}
		} else if conn.Exe == "" && conn.RemoteIP == (netip.Addr{}) && len(conn.Hosts) == 0 && conn.RemotePort == 0 {
			return usagef("describe the connection (--exe, --host, --ip, --port...) or give its id from the log")
		}
		ex, err := c.Explain(ctx, conn)
		if err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		w := inv.app.Stdout
		if inv.json {
			cands := make([]map[string]any, len(ex.Candidates))
			for i, cd := range ex.Candidates {
				cands[i] = cd.Fields()
			}
			return writeJSON(w, map[string]any{"connection": conn.Fields(), "explanation": ex.Text, "candidates": cands})
		}
		fmt.Fprintf(w, "%s %s -> %s\n", process(conn), conn.Direction, remote(conn)+" "+string(conn.Proto))
		fmt.Fprintf(w, "%s\n", ex.Text)
		if len(ex.Candidates) == 0 {
			fmt.Fprintln(w, "no rule matches")
			return nil
		}
		fmt.Fprintln(w, "\nmatching rules, the first decides:")
		tw := table(w)
		fmt.Fprintln(tw, "ID\tACTION\tPRIORITY\tSPECIFICITY\tMATCH\tLOST BY")
		for _, cd := range ex.Candidates {
			r := cd.Rule
			match := matchSummary(r)
			if cd.HostMatched != "" {
				match += " (host matched " + cd.HostMatched + ")"
			}
			lost := cd.LostBy
			if lost == "" {
				lost = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", r.ID, r.Action, r.Priority, cd.Specificity, match, lost)
		}
		return tw.Flush()
	}
}

// loggedConnection finds connection id in the log.
func loggedConnection(ctx context.Context, c Client, arg string) (shared.Connection, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(arg, "#"), 10, 64)
	if err != nil {
		return shared.Connection{}, usagef("connection id %q is not a number (tollgate log --json shows ids)", arg)
	}
	entries, err := c.RecentConnections(ctx, shared.LogFilter{Limit: shared.MaxLogLimit})
	if err != nil {
		return shared.Connection{}, fmt.Errorf("read the connection log: %w", err)
	}
	for _, e := range entries {
		if e.Connection.ID == id {
			return e.Connection, nil
		}
	}
	return shared.Connection{}, fmt.Errorf("connection %d in the last %d log entries: %w", id, len(entries), dbus.ErrNotFound)
}
