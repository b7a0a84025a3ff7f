package netns

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Counters are a namespace's IP and TCP statistics (/proc/net/snmp and
// /proc/net/netstat), keyed "Tcp.OutRsts", "TcpExt.TCPAbortOnData"...
type Counters map[string]int64

// ReadCounters reads the statistics of the namespace called name.
func ReadCounters(name string) (Counters, error) {
	out, err := exec.Command("ip", "netns", "exec", name, "cat", "/proc/net/snmp", "/proc/net/netstat").Output()
	if err != nil {
		return nil, fmt.Errorf("read counters of %s: %w", name, err)
	}
	return parseCounters(string(out))
}

// parseCounters reads the two-line form of /proc/net/snmp and netstat: a
// line of names and then a line of values, each starting "Group:".
func parseCounters(s string) (Counters, error) {
	c := Counters{}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(values) || names[0] != values[0] || !strings.HasSuffix(names[0], ":") {
			return nil, fmt.Errorf("counters: lines %d and %d do not pair: %q, %q", i+1, i+2, lines[i], lines[i+1])
		}
		group := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			v, err := strconv.ParseInt(values[j], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("counters: %s.%s = %q: %w", group, names[j], values[j], err)
			}
			c[group+"."+names[j]] = v
		}
	}
	return c, nil
}

// Since returns the counters that changed from before to c, as
// "name +delta" sorted by name, restricted to the groups given (all when
// none).
func (c Counters) Since(before Counters, groups ...string) string {
	var out []string
	for k, v := range c {
		if d := v - before[k]; d != 0 && (len(groups) == 0 || slices.Contains(groups, k[:strings.IndexByte(k, '.')])) {
			out = append(out, fmt.Sprintf("%s %+d", k, d))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
