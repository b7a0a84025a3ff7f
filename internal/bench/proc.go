package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100
// on every Linux architecture Tollgate builds for.
const clockTicks = 100

// cpuTicks returns the process's user+system CPU time in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu time of %d: malformed stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// After the command: state is field 3; utime 14 and stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu time of %d: short stat", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read cpu time of %d: malformed utime/stime", pid)
	}
	return u + s, nil
}

// rssMB returns the process's resident set size in MiB.
func rssMB(pid int) (float64, error) { return statusMB(pid, "VmRSS") }

// statusMB returns a "kB" field of /proc/PID/status (VmRSS, RssAnon,
// RssFile...) in MiB.
func statusMB(pid int, field string) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("read %s of %d: %q", field, pid, l)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("read %s of %d: not in status", field, pid)
}

// runJSON runs a command to completion and decodes the last line of its
// stdout as JSON into v.
func runJSON(ctx context.Context, v any, name string, args ...string) error {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s%s", strings.Join(append([]string{name}, args...), " "), err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		return fmt.Errorf("%s: decode output %q: %w", name, stdout.String(), err)
	}
	return nil
}
