package dbus

import (
	"fmt"
	"maps"
	"slices"

	godbus "github.com/godbus/dbus/v5"
)

// Bounds on a field map (a{sv}) read from the bus. Anything beyond them is
// ErrInvalidArgument; they keep one call from making the daemon hold or walk
// large structures.
const (
	MaxFields      = 64      // entries in one field map
	MaxKeyLen      = 64      // bytes in a field name
	MaxStringLen   = 4096    // bytes in a string value
	MaxListLen     = 256     // elements in a list value
	MaxDepth       = 3       // nesting of field maps
	MaxImportBytes = 4 << 20 // ImportRules text
	MaxIDLen       = 128     // a rule id
)

// MaxReplyBytes bounds what the daemon puts in one reply: dbus-daemon
// refuses a message over 32 MiB (max_message_size) and disconnects its
// sender, which for the daemon would end every agent's session.
const MaxReplyBytes = 24 << 20

// Pages of ListRulesPage: rules by default and at most, and bytes at most
// (a page stops short rather than pass them).
const (
	PageDefault = 500
	PageMax     = 5000
	PageBytes   = 4 << 20
)

// WireSize is an upper bound on the bytes f takes in a message as a{sv},
// padding included (the encoder is not run: it is for deciding what fits).
func WireSize(f map[string]any) int {
	n := 8 // array length, padded
	for k, v := range f {
		// Entry padding, key (length, bytes, nul), variant signature.
		n += 8 + 4 + len(k) + 1 + 8 + valueSize(v)
	}
	return n
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return 8 + len(x) // padding, length, nul
	case []string:
		n := 8
		for _, s := range x {
			n += 8 + len(s)
		}
		return n
	case map[string]any:
		return 8 + WireSize(x)
	case []map[string]any:
		n := 8
		for _, m := range x {
			n += 8 + WireSize(m)
		}
		return n
	}
	return 16 // numbers and booleans: at most 8 bytes and 8 of padding
}

// Variants encodes a field map (as shared's Fields methods make them) for
// the bus: every value becomes a variant, nested field maps become nested
// a{sv}, lists of field maps aa{sv}.
func Variants(f map[string]any) map[string]godbus.Variant {
	out := make(map[string]godbus.Variant, len(f))
	for k, v := range f {
		out[k] = godbus.MakeVariant(toWire(v))
	}
	return out
}

// VariantsList encodes a list of field maps (aa{sv}).
func VariantsList(fs []map[string]any) []map[string]godbus.Variant {
	out := make([]map[string]godbus.Variant, len(fs))
	for i, f := range fs {
		out[i] = Variants(f)
	}
	return out
}

func toWire(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return Variants(x)
	case []map[string]any:
		return VariantsList(x)
	}
	return v
}

// Fields unwraps a field map read from the bus into plain Go values that
// shared's FromFields functions read: basic values as they are, string
// lists as []string, nested a{sv} as map[string]any. It enforces the
// bounds above and refuses types no Tollgate field uses (object paths,
// signatures, file descriptors, nested variants, other containers); any
// such problem is an error wrapping ErrInvalidArgument.
func Fields(f map[string]godbus.Variant) (map[string]any, error) {
	return unwrapMap(f, 1)
}

// FieldsList unwraps aa{sv}.
func FieldsList(fs []map[string]godbus.Variant) ([]map[string]any, error) {
	if len(fs) > 100000 {
		return nil, fmt.Errorf("%w: %d records", ErrInvalidArgument, len(fs))
	}
	out := make([]map[string]any, len(fs))
	for i, f := range fs {
		m, err := Fields(f)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out[i] = m
	}
	return out, nil
}

func unwrapMap(f map[string]godbus.Variant, depth int) (map[string]any, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("%w: field maps nested deeper than %d", ErrInvalidArgument, MaxDepth)
	}
	if len(f) > MaxFields {
		return nil, fmt.Errorf("%w: %d fields (at most %d)", ErrInvalidArgument, len(f), MaxFields)
	}
	out := make(map[string]any, len(f))
	// Sorted so the first problem reported does not depend on map order.
	for _, k := range slices.Sorted(maps.Keys(f)) {
		if len(k) == 0 || len(k) > MaxKeyLen {
			return nil, fmt.Errorf("%w: field name of %d bytes (1-%d)", ErrInvalidArgument, len(k), MaxKeyLen)
		}
		v, err := unwrapValue(f[k].Value(), depth)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

func unwrapValue(v any, depth int) (any, error) {
	switch x := v.(type) {
	case string:
		if len(x) > MaxStringLen {
			return nil, fmt.Errorf("%w: string of %d bytes (at most %d)", ErrInvalidArgument, len(x), MaxStringLen)
		}
		return x, nil
	case bool, byte, int16, uint16, int32, uint32, int64, uint64, float64:
		return x, nil
	case []string:
		if len(x) > MaxListLen {
			return nil, fmt.Errorf("%w: list of %d (at most %d)", ErrInvalidArgument, len(x), MaxListLen)
		}
		for _, s := range x {
			if len(s) > MaxStringLen {
				return nil, fmt.Errorf("%w: string of %d bytes (at most %d)", ErrInvalidArgument, len(s), MaxStringLen)
			}
		}
		return slices.Clone(x), nil
	case map[string]godbus.Variant:
		return unwrapMap(x, depth+1)
	case nil:
		return nil, fmt.Errorf("%w: empty variant", ErrInvalidArgument)
	}
	return nil, fmt.Errorf("%w: unsupported value type %T", ErrInvalidArgument, v)
}
