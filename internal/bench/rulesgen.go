package bench

import (
	"fmt"
	"strings"
)

// genRules writes n rules as a TOML rules file: a realistic mix of
// per-application rules (exact exe and port, exe globs, exe and CIDR), host
// rules (exact and *.domain) and a few that no index can narrow (a unit
// glob), none of which covers the benchmark's load client. When loadExe is
// set, ten deny rules for loadExe on other ports come early and the one
// rule that allows loadExe to reach port allowPort sits in the middle: the
// matching rule is not the first one looked at.
func genRules(n int, loadExe string, allowPort int) string {
	var b strings.Builder
	b.Grow(n * 90)
	rule := func(name string, kv ...any) {
		fmt.Fprintf(&b, "[[rule]]\nname = %q\n", name)
		for i := 0; i+1 < len(kv); i += 2 {
			switch v := kv[i+1].(type) {
			case string:
				fmt.Fprintf(&b, "%s = %q\n", kv[i], v)
			default:
				fmt.Fprintf(&b, "%s = %v\n", kv[i], v)
			}
		}
	}
	for i := 0; i < n; i++ {
		if loadExe != "" {
			if i < 10 {
				rule(fmt.Sprintf("load-deny-%d", i), "action", "deny", "exe", loadExe, "proto", "tcp", "port", 8000+i)
				continue
			}
			if i == n/2 {
				rule("load-allow", "action", "allow", "exe", loadExe, "proto", "tcp", "port", allowPort)
				continue
			}
		}
		name := fmt.Sprintf("r%d", i)
		switch i % 10 {
		case 0, 1, 2, 3:
			rule(name, "action", "allow", "exe", fmt.Sprintf("/usr/lib/app%d/bin/app%d", i, i), "proto", "tcp", "port", 443)
		case 4, 5:
			rule(name, "action", "deny", "host", fmt.Sprintf("*.svc%d.example.net", i))
		case 6:
			rule(name, "action", "allow", "exe", fmt.Sprintf("/opt/tool%d/tool", i), "ip", fmt.Sprintf("100.%d.%d.0/24", 64+(i>>16)%64, (i>>8)&255))
		case 7:
			rule(name, "action", "allow", "host", fmt.Sprintf("api%d.example.com", i), "port", 443)
		case 8:
			rule(name, "action", "allow", "exe", fmt.Sprintf("/home/*/.local/bin/tool%d", i))
		case 9:
			if i%100 == 99 {
				rule(name, "action", "reject", "unit", fmt.Sprintf("batch%d-*.service", i))
			} else {
				rule(name, "action", "reject", "exe", fmt.Sprintf("/usr/bin/daemon%d", i), "port", fmt.Sprintf("%d-%d", 1000+i%5000, 1100+i%5000))
			}
		}
	}
	return b.String()
}
