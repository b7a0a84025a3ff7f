package cli

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/tollgate-fw/tollgate/shared"
)

// BenchmarkRulesList renders `tollgate rules list` for 10,000 rules, as a
// table and as JSON (the fake answers at once: this is the CLI's own cost).
func BenchmarkRulesList(b *testing.B) {
	h := newHarness()
	for i := range 10000 {
		h.fake.rules = append(h.fake.rules, shared.Rule{
			ID: fmt.Sprintf("r%05d", i), Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
			Owner: uint32(1000 + i%3), Hits: uint64(i),
			Match: shared.Match{Exe: fmt.Sprintf("/usr/bin/app%d", i), Host: fmt.Sprintf("h%d.example.org", i),
				Port: shared.PortRange{Lo: 443, Hi: 443}, Proto: shared.ProtoTCP},
		})
	}
	for _, format := range []string{"table", "json"} {
		b.Run(format, func(b *testing.B) {
			args := []string{"rules", "list"}
			if format == "json" {
				args = append(args, "--json")
			}
			var dials []string
			app := h.app(io.Discard, io.Discard, &dials)
			b.ReportAllocs()
			for b.Loop() {
				if code := app.Run(context.Background(), args); code != ExitOK {
					b.Fatalf("exit %d", code)
				}
			}
		})
	}
}
