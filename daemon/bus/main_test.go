package bus

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// envHelper makes the test binary a D-Bus client: it reads helperOps as
// JSON lines on stdin, runs them with dbus.Client against the bus at
// envAddr, and writes one helperResult per op on stdout. Integration tests
// run it under other uids (setpriv).
const (
	envHelper = "TOLLGATE_BUS_TEST_CLIENT"
	envAddr   = "TOLLGATE_BUS_TEST_ADDRESS"
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) != "" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

type helperOp struct {
	Op     string         `json:"op"`
	ID     string         `json:"id,omitempty"`
	N      uint64         `json:"n,omitempty"`
	S      string         `json:"s,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`
}

type helperResult struct {
	Err   string `json:"err"` // D-Bus error name, other error text, "" = ok
	Value any    `json:"value,omitempty"`
}

func errName(err error) string {
	if err == nil {
		return ""
	}
	var de *dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	return err.Error()
}

// wireFields turns JSON numbers into the D-Bus types the field names use.
func wireFields(f map[string]any) map[string]any {
	out := make(map[string]any, len(f))
	for k, v := range f {
		if n, ok := v.(json.Number); ok {
			i, _ := n.Int64()
			switch k {
			case "owner", "uid", "gid", "limit":
				v = uint32(i)
			default:
				v = int32(i)
			}
		}
		out[k] = v
	}
	return out
}

func runHelper() int {
	ctx := context.Background()
	c, err := dbus.Dial(ctx, os.Getenv(envAddr))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	defer c.Close()
	in := json.NewDecoder(bufio.NewReader(os.Stdin))
	in.UseNumber()
	out := json.NewEncoder(os.Stdout)
	var sigs <-chan dbus.Signal
	var seen []uint64 // ConnectionPending ids received, in order
	for {
		var op helperOp
		if err := in.Decode(&op); err != nil {
			return 0
		}
		res := helperDo(ctx, c, op, &sigs, &seen)
		if err := out.Encode(res); err != nil {
			return 2
		}
	}
}

func signalTo(dest string, path godbus.ObjectPath, iface, member string, body ...any) *godbus.Message {
	return &godbus.Message{
		Type: godbus.TypeSignal,
		Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldDestination: godbus.MakeVariant(dest),
			godbus.FieldPath:        godbus.MakeVariant(path),
			godbus.FieldInterface:   godbus.MakeVariant(iface),
			godbus.FieldMember:      godbus.MakeVariant(member),
			godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(body...)),
		},
		Body: body,
	}
}

func helperDo(ctx context.Context, c *dbus.Client, op helperOp, sigs *<-chan dbus.Signal, seen *[]uint64) helperResult {
	var v any
	var err error
	switch op.Op {
	case "GetStatus":
		var st shared.Status
		st, err = c.GetStatus(ctx)
		v = st.Mode
	case "SetMode":
		err = c.SetMode(ctx, op.S)
	case "ListRules":
		var rs []shared.Rule
		rs, err = c.ListRules(ctx)
		ids := []string{}
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		v = ids
	case "AddRule":
		v, err = c.AddRuleFields(ctx, wireFields(op.Fields))
	case "UpdateRule":
		var r shared.Rule
		r, err = shared.RuleFromFields(wireFields(op.Fields))
		if err == nil {
			err = c.UpdateRule(ctx, op.ID, r)
		}
	case "DeleteRule":
		err = c.DeleteRule(ctx, op.ID)
	case "ExportRules":
		v, err = c.ExportRules(ctx)
	case "ImportRules":
		v, err = c.ImportRules(ctx, op.S)
	case "RegisterAgent":
		err = c.RegisterAgent(ctx)
	case "UnregisterAgent":
		err = c.UnregisterAgent(ctx)
	case "ListPending":
		var ps []shared.Pending
		ps, err = c.ListPending(ctx)
		ids := []uint64{}
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
		v = ids
	case "Answer":
		a := shared.Answer{PendingID: op.N, Action: shared.ActionAllow, Lifetime: shared.LifetimeOnce, Scope: shared.ScopeExeHost}
		if op.S == "system" {
			a.System = true
		}
		err = c.Answer(ctx, a)
	case "RecentConnections":
		f := shared.LogFilter{}
		if op.Fields != nil {
			f, err = shared.LogFilterFromFields(wireFields(op.Fields))
		}
		if err == nil {
			var es []shared.LogEntry
			es, err = c.RecentConnections(ctx, f)
			uids := []int64{}
			for _, e := range es {
				uids = append(uids, e.Connection.UID)
			}
			v = uids
		}
	case "Subscribe":
		*sigs, err = c.Signals(ctx)
	case "WaitPending": // collect ConnectionPending until id op.N arrives
		t := time.NewTimer(20 * time.Second)
		defer t.Stop()
	wait:
		for {
			select {
			case s, ok := <-*sigs:
				if !ok {
					err = errors.New("signal channel closed")
					break wait
				}
				if s.Name == dbus.SignalConnectionPending {
					*seen = append(*seen, s.Pending.ID)
					if s.Pending.ID == op.N {
						break wait
					}
				}
			case <-t.C:
				err = errors.New("timed out waiting for ConnectionPending")
				break wait
			}
		}
		v = *seen
	case "Serve": // run a server as this uid; report how it ends
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		err = Serve(sctx, Options{Address: os.Getenv(envAddr), Backend: newFakeBackend(), PolkitDisabled: true})
		if errors.Is(err, ErrNameNotAllowed) {
			return helperResult{Err: "name not allowed", Value: err.Error()}
		}
		if err == nil {
			err = errors.New("Run returned nil (served or timed out)")
		}
	case "WaitSignal": // wait for a signal named op.S; other signals are noted
		t := time.NewTimer(20 * time.Second)
		defer t.Stop()
		for v == nil && err == nil {
			select {
			case s, ok := <-*sigs:
				if !ok {
					err = errors.New("signal channel closed")
				}
				if s.Name == dbus.SignalConnectionPending {
					*seen = append(*seen, s.Pending.ID)
				}
				if s.Name == op.S {
					v = map[string]any{"id": s.ID, "action": s.Action, "mode": s.Status.Mode, "pending_seen": len(*seen)}
					if s.Name == dbus.SignalDaemonChanged {
						v = map[string]any{"owner_set": s.Owner != ""}
					}
				}
			case <-t.C:
				err = fmt.Errorf("timed out waiting for %s", op.S)
			}
		}
	case "Forge": // send signals to op.S as if from the daemon and from the bus
		conn := c.Conn()
		fake := shared.Pending{ID: op.N, Connection: shared.Connection{UID: 65534, Exe: "/usr/bin/firefox"}}
		for _, m := range []*godbus.Message{
			signalTo(op.S, dbus.ObjectPath, dbus.Interface, dbus.SignalConnectionPending, dbus.Variants(fake.Fields())),
			signalTo(op.S, "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged", op.ID, op.ID, ""),
		} {
			if err = conn.Send(m, nil).Err; err != nil {
				break
			}
		}
	case "Exit":
		os.Exit(0)
	default:
		err = fmt.Errorf("unknown op %q", op.Op)
	}
	return helperResult{Err: errName(err), Value: v}
}
