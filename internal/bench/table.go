package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteTable prints the results as Markdown tables: the cases, memory and
// start-up, attribution under churn, and the targets.
func (r *Results) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "Machine: %s. %d connections per case and round, %d rounds (medians), %d load workers; daemon log_level = %q.\n\n",
		r.Machine, r.Settings.Conns, r.Settings.Rounds, r.Settings.Workers, r.Settings.LogLevel)
	fmt.Fprintln(w, "| case | conn/s | × case 2 | p50 µs | × case 2 | p99 µs | decider CPU s / 1k conn | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range r.Cases {
		cpu := "–"
		if c.Decider != kindNone && c.CPUPer1k > 0 {
			cpu = fmt.Sprintf("%.3f", c.CPUPer1k)
		}
		errs := fmt.Sprint(c.Errors)
		if c.Resets > 0 {
			errs += fmt.Sprintf(" (+%d reset after the handshake)", c.Resets)
		}
		fmt.Fprintf(w, "| %s. %s | %.0f | %.2f | %.0f | %.2f | %.0f | %s | %s |\n",
			c.ID, c.Name, c.PerSec, c.RatioPerSec, c.P50us, c.RatioP50, c.P99us, cpu, errs)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| memory and start-up | |")
		fmt.Fprintln(w, "|---|---:|")
		if c := caseByID(r.Cases, "3"); c != nil && len(c.Rounds) > 0 {
			fmt.Fprintf(w, "| RSS idle, 1 rule (case 3, ready) | %.1f MB |\n", c.Rounds[0].RSSReadyMB)
			fmt.Fprintf(w, "| RSS after %d connections, 1 rule | %.1f MB |\n", c.Rounds[0].Connections, c.Rounds[0].RSSAfterMB)
		}
		fmt.Fprintf(w, "| storing %d rules (`tollgated --import-rules`) | %.2f s |\n", m.Rules, m.ImportSeconds)
		fmt.Fprintf(w, "| start-up, exec to first queued packet decided, %d rules | %.3f s |\n", m.Rules, m.StartupSeconds)
		fmt.Fprintf(w, "| RSS idle, %d rules | %.1f MB (anonymous %.1f, file %.1f) |\n", m.Rules, m.RSSIdleMB, m.RSSIdleAnonMB, m.RSSIdleFileMB)
		fmt.Fprintf(w, "| RSS after %d connections, %d rules | %.1f MB |\n", m.LoadConns, m.Rules, m.RSSAfterMB)
		fmt.Fprintf(w, "| idle CPU over %.0f s, %d rules | %.2f s |\n", m.IdleFor, m.Rules, m.IdleCPUSeconds)
		errs := ""
		if m.LoadFirstError != "" {
			errs = " (" + strings.ReplaceAll(m.LoadFirstError, "|", "/") + ")"
		}
		if m.LoadResets > 0 {
			errs += fmt.Sprintf(", %d reset after the handshake (%s)", m.LoadResets, strings.ReplaceAll(m.LoadFirstReset, "|", "/"))
		}
		fmt.Fprintf(w, "| load with %d rules | %.0f conn/s, %d errors%s, %d refused by the daemon |\n", m.Rules, m.LoadPerSec, m.LoadErrors, errs, m.LoadRefused)
	}
	if c := r.Churn; c != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Attribution under churn: %d short-lived processes from %d executables, %d at once, each connecting once and exiting.\n\n",
			c.Processes, c.Executables, c.Parallel)
		fmt.Fprintln(w, "| right | unknown (uid only) | wrong | connection failed |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|")
		pct := func(n int) string {
			if c.Processes == 0 {
				return "–"
			}
			return fmt.Sprintf("%d (%.2f%%)", n, 100*float64(n)/float64(c.Processes))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d |\n", pct(c.Right), pct(c.Unknown), pct(c.Wrong), c.Failed)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | this run | met |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, t := range r.Targets {
			met := "yes"
			if !t.Met {
				met = "**no**"
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", t.What, strings.ReplaceAll(t.Value, "|", "/"), met)
		}
	}
}
