package bus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	godbus "github.com/godbus/dbus/v5"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// FuzzDecodeRule feeds raw D-Bus messages to the daemon's rule decoder
// (what AddRule and UpdateRule run on their argument): it never panics,
// refuses only with InvalidArgument, and what it accepts is a valid rule
// without bookkeeping.
func FuzzDecodeRule(f *testing.F) {
	add := func(fields map[string]any) {
		msg := &godbus.Message{
			Type: godbus.TypeMethodCall,
			Headers: map[godbus.HeaderField]godbus.Variant{
				godbus.FieldPath:      godbus.MakeVariant(dbus.ObjectPath),
				godbus.FieldMember:    godbus.MakeVariant(dbus.MethodAddRule),
				godbus.FieldSignature: godbus.MakeVariant(godbus.SignatureOf(dbus.Variants(fields))),
			},
			Body: []any{dbus.Variants(fields)},
		}
		var buf bytes.Buffer
		if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	add(map[string]any{"action": "allow", "exe": "/usr/bin/curl", "host": "example.org", "port": "443", "owner": uint32(1000)})
	add(map[string]any{"action": "deny", "lifetime": "until", "until": "2030-01-01T00:00:00Z", "ip": "10.0.0.0/8"})
	add(map[string]any{"action": "allow", "hits": uint64(3)})
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := godbus.DecodeMessage(bytes.NewReader(data))
		if err != nil || len(msg.Body) != 1 {
			return
		}
		raw, ok := msg.Body[0].(map[string]godbus.Variant)
		if !ok {
			return
		}
		r, _, err := decodeRule(raw)
		if err != nil {
			if !errors.Is(err, dbus.ErrInvalidArgument) {
				t.Fatalf("refused without InvalidArgument: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted an invalid rule: %v", err)
		}
		for k := range r.Fields() {
			if shared.IsBookkeepingField(k) {
				t.Fatalf("accepted bookkeeping field %s", k)
			}
		}
	})
}
