package attribution

import (
	"bytes"
	"strconv"
	"strings"
)

// parseCgroup returns the process's cgroup path from /proc/PID/cgroup: the
// unified (v2) hierarchy's "0::/path" line, else the v1 "name=systemd"
// hierarchy. It returns "" when neither is there.
func parseCgroup(b []byte) string {
	v1 := ""
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		// hierarchy-ID:controller-list:cgroup-path; the path may hold ':'.
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		j := bytes.IndexByte(line[i+1:], ':')
		if j < 0 {
			continue
		}
		hier, ctrl, path := line[:i], line[i+1:i+1+j], line[i+2+j:]
		if len(path) == 0 || path[0] != '/' {
			continue
		}
		if string(hier) == "0" && len(ctrl) == 0 {
			return string(path)
		}
		if string(ctrl) == "name=systemd" && v1 == "" {
			v1 = string(path)
		}
	}
	return v1
}

// cgroupUnit names what a cgroup path says about a process: its systemd
// unit (a .service or .scope, as systemd spells it) and, for sandboxed
// desktop apps, the app: "flatpak:<app-id>" or "snap:<snap-name>".
//
// Only the outermost unit is named by the system's manager. A unit's
// cgroup holds further units only when it was delegated (Delegate=yes):
// user@UID.service, where the user's own manager — and so the user — names
// every cgroup and unit below it, or a container runtime's scope. A unit
// inside such a subtree is therefore qualified with every unit above it,
// joined by '/', so that a user's "backup.service" can never read as the
// system's:
//
//	/system.slice/sshd.service                                  → sshd.service
//	/user.slice/user-1000.slice/session-2.scope                 → session-2.scope
//	/user.slice/user-1000.slice/user@1000.service/app.slice/
//	    backup.service                                          → user@1000.service/backup.service
//	/user.slice/user-1000.slice/user@1000.service/app.slice/
//	    app-flatpak-org.mozilla.firefox-12345.scope             → user@1000.service/app-flatpak-…scope,
//	                                                              flatpak:org.mozilla.firefox
//	/user.slice/…/user@1000.service/app.slice/snap.firefox.firefox-2c5b….scope
//	                                                            → user@1000.service/snap.firefox.firefox-2c5b….scope, snap:firefox
//
// The app comes from the innermost flatpak or snap unit name. Inside a
// delegated subtree that name is the user's claim, not the system's: any
// program of the user can start itself in a scope named
// app-flatpak-org.mozilla.firefox-1.scope. A rule that trusts App there
// trusts the user, no more. (Flatpak's /.flatpak-info in the process's
// root is no stronger: where unprivileged user namespaces exist, the user
// can build a root holding one.) Snap services started by the system's
// manager (/system.slice/snap.lxd.daemon.service) are named by root.
func cgroupUnit(path string) (unit, app string) {
	var b strings.Builder
	for p := range strings.SplitSeq(path, "/") {
		if !isUnitName(p) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(p)
		if a := unitApp(p); a != "" {
			app = a
		}
	}
	return b.String(), app
}

// isUnitName says whether a cgroup path element is a service or scope
// unit's cgroup.
func isUnitName(p string) bool {
	for _, suf := range []string{".service", ".scope"} {
		if name, ok := strings.CutSuffix(p, suf); ok && name != "" {
			return true
		}
	}
	return false
}

// unitApp reads the sandboxed app a unit name stands for, or "".
func unitApp(u string) string {
	switch {
	case strings.HasSuffix(u, ".scope"):
		name := strings.TrimSuffix(u, ".scope")
		for _, pre := range []string{"app-flatpak-", "flatpak-"} {
			if id, ok := strings.CutPrefix(name, pre); ok {
				id = unescapeUnit(trimInstance(id))
				if validAppID(id) {
					return "flatpak:" + id
				}
				return ""
			}
		}
		if rest, ok := strings.CutPrefix(name, "snap."); ok {
			return snapApp(rest)
		}
	case strings.HasSuffix(u, ".service"):
		if rest, ok := strings.CutPrefix(strings.TrimSuffix(u, ".service"), "snap."); ok {
			return snapApp(rest)
		}
	}
	return ""
}

// snapApp reads "<snap>.<app>[-<uuid>]" (after "snap.") and returns
// "snap:<snap>".
func snapApp(rest string) string {
	name, _, ok := strings.Cut(rest, ".")
	if !ok || name == "" {
		return ""
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ""
		}
	}
	return "snap:" + name
}

// trimInstance removes the "-<digits>" a launcher appends to a scope name.
func trimInstance(s string) string {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return s
	}
	for _, c := range s[i+1:] {
		if c < '0' || c > '9' {
			return s
		}
	}
	return s[:i]
}

// validAppID checks the shape of a Flatpak application id: at least two
// dot-separated elements of [A-Za-z0-9_-], none empty.
func validAppID(id string) bool {
	if len(id) == 0 || len(id) > 255 {
		return false
	}
	elems := strings.Split(id, ".")
	if len(elems) < 2 {
		return false
	}
	for _, e := range elems {
		if e == "" {
			return false
		}
		for _, c := range e {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

// unescapeUnit undoes systemd's unit name escaping ("\x2d" for '-').
func unescapeUnit(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
