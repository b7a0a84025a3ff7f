package packaging

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/config"
	"github.com/tollgate-fw/tollgate/daemon/service"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"github.com/tollgate-fw/tollgate/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// here is this package's directory (packaging/), repoRoot the checkout's.
func here(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Dir(file)
}

func repoRoot(t testing.TB) string { return filepath.Dir(here(t)) }

// run runs a command and returns its combined output; a failure fails t.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The shipped rules.d files pass the daemon's own check, every [[rule]] of
// them loads, and each file is one the package installs.
func TestShippedRulesCheck(t *testing.T) {
	dir := filepath.Join(here(t), "rules.d")
	cfg, err := config.Load("")
	if err != nil {
		t.Fatalf("load defaults: %v", err)
	}
	cfg.RulesDir = dir
	var out bytes.Buffer
	if err := service.CheckConfig(cfg, &out); err != nil {
		t.Fatalf("tollgated --check-config on packaging/rules.d: %v\n%s", err, out.String())
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("rules.d files: %v %v", files, err)
	}
	nfpm, err := os.ReadFile(filepath.Join(here(t), "nfpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want += len(regexp.MustCompile(`(?m)^\[\[rule\]\]`).FindAll(b, -1))
		if !bytes.Contains(nfpm, []byte("src: packaging/rules.d/"+filepath.Base(f)+"\n")) {
			t.Errorf("%s is not in nfpm.yaml's contents", filepath.Base(f))
		}
	}
	if got := fmt.Sprintf("%d rule(s) load", want); !strings.Contains(out.String(), got) {
		t.Errorf("check says %q, want %q (a rule was dropped)", out.String(), got)
	}
	// What a fresh desktop needs: resolver, clock, package manager.
	all := out.String()
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all += string(b)
	}
	for _, need := range []string{
		`unit      = "systemd-resolved.service"`,
		`unit      = "systemd-timesyncd.service"`,
		`exe       = "/usr/lib/apt/methods/http"`,
		`exe       = "/usr/bin/dnf5"`,
		`exe       = "/usr/libexec/packagekitd"`,
	} {
		if !strings.Contains(all, need) {
			t.Errorf("no shipped rule with %s", need)
		}
	}
}

// unitDirectives returns the unit file's directives: "Key" -> values in order.
func unitDirectives(t testing.TB, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not a directive: %q", path, line)
		}
		d[k] = append(d[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// The unit keeps the shape the issue asks for: D-Bus activation semantics,
// up before the network, restarted on failure, and its hardening (a line
// dropped by mistake fails here).
func TestUnitHardening(t *testing.T) {
	d := unitDirectives(t, filepath.Join(here(t), "systemd", "tollgated.service"))
	one := func(k, want string) {
		t.Helper()
		if got := d[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	has := func(k, word string) {
		t.Helper()
		for _, v := range d[k] {
			if slices.Contains(strings.Fields(v), word) {
				return
			}
		}
		t.Errorf("%s=%q lacks %s", k, d[k], word)
	}
	one("Type", "dbus")
	one("BusName", "org.tollgate.Firewall1")
	one("ExecStart", "/usr/bin/tollgated")
	one("Restart", "on-failure")
	has("Before", "network-pre.target")
	has("Wants", "network-pre.target")
	caps := "CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"
	one("CapabilityBoundingSet", caps)
	one("AmbientCapabilities", caps)
	one("NoNewPrivileges", "yes")
	one("ProtectSystem", "strict")
	one("StateDirectory", "tollgate")
	has("ReadWritePaths", "/var/lib/tollgate")
	// Executables under /home are hashed: readable, not hidden.
	one("ProtectHome", "read-only")
	has("SystemCallFilter", "@system-service")
	one("SystemCallArchitectures", "native")
	// Attribution reads every process's /proc entries.
	for _, k := range []string{"ProtectProc", "ProcSubset", "PrivateNetwork", "User", "DynamicUser"} {
		if _, ok := d[k]; ok {
			t.Errorf("%s= would break the daemon (it reads all of /proc, runs as root in the host network)", k)
		}
	}
}

// tools the integration test needs (make deps installs them).
var tools = []string{"unshare", "setpriv", "make", "dpkg", "dpkg-deb", "rpm", "lintian", "systemd-analyze", "dbus-daemon", "iptables"}

// payload lists the regular files and symlinks of a package listing whose
// lines start with a mode string ("-rw-r--r--", "lrwxrwxrwx"...) and end
// with the path; directories are left out (nfpm's .rpm owns fewer of them).
func payload(listing string, pathField func(fields []string) string) []string {
	var files []string
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0][0] == 'd' {
			continue
		}
		p := "/" + strings.TrimPrefix(strings.TrimPrefix(pathField(f), "."), "/")
		files = append(files, p)
	}
	sort.Strings(files)
	return files
}

// TestIntegrationPackages builds the .deb and .rpm with make, checks them
// (lintian, rpm -qp, same payload), installs the .deb into a root of its own
// (never the machine's), starts the installed daemon in this test's network
// namespace against a private bus that uses the installed D-Bus policy,
// with only the capabilities the unit grants and a read-only system as
// ProtectSystem=strict leaves it, asks it with the installed
// `tollgate status`, then removes and purges.
func TestIntegrationPackages(t *testing.T) {
	nstest.RequireNetns(t)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps): %v", tool, err)
		}
	}
	out := t.TempDir()
	run(t, "make", "-C", repoRoot(t), "--no-print-directory", "deb", "rpm", "PKG_OUT="+out)
	debs, _ := filepath.Glob(filepath.Join(out, "tollgate_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(out, "tollgate-[0-9]*.rpm"))
	trayDebs, _ := filepath.Glob(filepath.Join(out, "tollgate-tray_*.deb"))
	trayRPMs, _ := filepath.Glob(filepath.Join(out, "tollgate-tray-*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 || len(trayDebs) != 1 || len(trayRPMs) != 1 {
		t.Fatalf("want one .deb and one .rpm of each package in %s, got %v %v %v %v", out, debs, rpms, trayDebs, trayRPMs)
	}
	deb, rpm := debs[0], rpms[0]
	debVersion := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Version"))
	version := strings.TrimSuffix(debVersion, "-1")
	t.Run("tray package", func(t *testing.T) { checkTrayPackages(t, trayDebs[0], trayRPMs[0], debVersion) })

	t.Run("lintian", func(t *testing.T) { lintian(t, deb) })

	t.Run("deb control", func(t *testing.T) {
		f := run(t, "dpkg-deb", "-f", deb, "Package", "Depends", "Recommends", "Architecture")
		for _, want := range []string{"Package: tollgate\n", "iptables", "dbus-system-bus | dbus", "Recommends: polkitd"} {
			if !strings.Contains(f, want) {
				t.Errorf("control lacks %q:\n%s", want, f)
			}
		}
		conf := run(t, "dpkg-deb", "-I", deb, "conffiles")
		for _, want := range []string{"/etc/tollgate/config.toml", "/etc/tollgate/rules.d/10-dns.toml", "/etc/tollgate/rules.d/20-ntp.toml", "/etc/tollgate/rules.d/30-package-manager.toml"} {
			if !strings.Contains(conf, want+"\n") {
				t.Errorf("conffiles lacks %s:\n%s", want, conf)
			}
		}
	})

	t.Run("rpm", func(t *testing.T) {
		info := run(t, "rpm", "-qpi", rpm)
		for _, want := range []string{"Name        : tollgate", "Version     : " + version, "Release     : 1"} {
			if !strings.Contains(info, want) {
				t.Errorf("rpm -qpi lacks %q:\n%s", want, info)
			}
		}
		req := run(t, "rpm", "-qp", "--requires", rpm)
		for _, want := range []string{"iptables", "dbus"} {
			if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(req) {
				t.Errorf("rpm requires lacks %s:\n%s", want, req)
			}
		}
		if rec := run(t, "rpm", "-qp", "--recommends", rpm); !strings.Contains(rec, "polkit") {
			t.Errorf("rpm recommends lacks polkit:\n%s", rec)
		}
		conf := run(t, "rpm", "-qpc", rpm)
		for _, want := range []string{"/etc/tollgate/config.toml", "/etc/tollgate/rules.d/10-dns.toml"} {
			if !strings.Contains(conf, want+"\n") {
				t.Errorf("rpm config files lack %s:\n%s", want, conf)
			}
		}
		scripts := run(t, "rpm", "-qp", "--scripts", rpm)
		for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "--no-reload enable tollgated.service", "--no-reload disable tollgated.service"} {
			if !strings.Contains(scripts, want) {
				t.Errorf("rpm scripts lack %q:\n%s", want, scripts)
			}
		}
	})

	t.Run("same payload", func(t *testing.T) {
		// The .deb carries Debian's own extras; everything else is the same.
		if r := samePayload(t, deb, rpm, "/usr/share/doc/tollgate/changelog.Debian.gz", "/usr/share/lintian/overrides/tollgate"); len(r) < 9 {
			t.Errorf("payload too small: %v", r)
		}
	})

	// Install into a root of our own. Scripts run outside a chroot with
	// DPKG_ROOT set, which they honour (deb-systemd-helper records inside
	// the root, no systemctl, purge inside the root).
	root := t.TempDir()
	// What any systemd machine has: deb-systemd-helper keeps its records
	// there, and these directories stay after a purge as they would anyway.
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/systemd/system", "var/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--log=/dev/null"}, args...)...)
	}
	dpkg("-i", deb)
	for _, p := range []string{
		"usr/bin/tollgated", "usr/bin/tollgate",
		"usr/lib/systemd/system/tollgated.service",
		"usr/share/dbus-1/system.d/org.tollgate.Firewall1.conf",
		"usr/share/polkit-1/actions/org.tollgate.policy",
		"etc/tollgate/config.toml",
		"etc/tollgate/rules.d/10-dns.toml", "etc/tollgate/rules.d/20-ntp.toml", "etc/tollgate/rules.d/30-package-manager.toml",
		"usr/share/doc/tollgate/copyright",
	} {
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("installed: %v", err)
			continue
		}
		if strings.HasPrefix(p, "usr/bin/") && st.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v, want 0755", p, st.Mode().Perm())
		}
	}
	if st := run(t, "dpkg", "--root="+root, "-s", "tollgate"); !strings.Contains(st, "Status: install ok installed") {
		t.Fatalf("dpkg -s:\n%s", st)
	}
	// postinst enabled the unit (deb-systemd-helper, inside DPKG_ROOT).
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/tollgated.service")
	if target, err := os.Readlink(wants); err != nil || filepath.Base(target) != "tollgated.service" {
		t.Errorf("postinst did not enable tollgated.service: %q %v", target, err)
	}
	// The same files as shipped, from both packages' point of view.
	for _, p := range []string{"packaging/dbus/org.tollgate.Firewall1.conf", "packaging/polkit/org.tollgate.policy", "packaging/systemd/tollgated.service"} {
		want, _ := os.ReadFile(filepath.Join(repoRoot(t), p))
		var got []byte
		switch filepath.Ext(p) {
		case ".conf":
			got, _ = os.ReadFile(filepath.Join(root, "usr/share/dbus-1/system.d", filepath.Base(p)))
		case ".policy":
			got, _ = os.ReadFile(filepath.Join(root, "usr/share/polkit-1/actions", filepath.Base(p)))
		default:
			got, _ = os.ReadFile(filepath.Join(root, "usr/lib/systemd/system", filepath.Base(p)))
		}
		if len(want) == 0 || !bytes.Equal(got, want) {
			t.Errorf("installed %s differs from the checkout's", p)
		}
	}

	t.Run("config commented", func(t *testing.T) {
		installed, err := os.ReadFile(filepath.Join(root, "etc/tollgate/config.toml"))
		if err != nil {
			t.Fatal(err)
		}
		key := regexp.MustCompile(`(?m)^([a-z_]+)\s*=`)
		if m := key.FindAll(installed, -1); m != nil {
			t.Errorf("installed config sets keys (all must be commented): %q", m)
		}
		for _, m := range key.FindAllSubmatch(config.DefaultTOML(), -1) {
			if !regexp.MustCompile(`(?m)^# ` + string(m[1]) + `\s*=`).Match(installed) {
				t.Errorf("installed config lacks the commented key %s", m[1])
			}
		}
		// The installed daemon reads it and the installed rules.
		cfg := filepath.Join(t.TempDir(), "check.toml")
		writeConfig(t, cfg, root, fmt.Sprintf("rules_dir = %q\n", filepath.Join(root, "etc/tollgate/rules.d")))
		o := run(t, filepath.Join(root, "usr/bin/tollgated"), "--config", cfg, "--check-config")
		if !strings.Contains(o, "configuration ok") || !strings.Contains(o, "rule(s) load") {
			t.Errorf("tollgated --check-config:\n%s", o)
		}
		if v := run(t, filepath.Join(root, "usr/bin/tollgated"), "--version"); strings.TrimSpace(v) != "tollgated "+version {
			t.Errorf("tollgated --version = %q, want %q", v, version)
		}
	})

	t.Run("systemd-analyze", func(t *testing.T) {
		verifyUnit(t, root)
	})

	t.Run("daemon answers", func(t *testing.T) {
		bus := bustest.StartWithPolicy(t, filepath.Join(root, "usr/share/dbus-1/system.d/org.tollgate.Firewall1.conf"), false)
		cfg := filepath.Join(t.TempDir(), "config.toml")
		writeConfig(t, cfg, root, fmt.Sprintf(
			"database = %q\nrules_dir = %q\nbus_address = %q\npolkit = false\n"+
				"intercept_loopback = true\ninbound = false\ndefault_action = \"reject\"\n",
			filepath.Join(root, "var/lib/tollgate/tollgate.db"), filepath.Join(root, "etc/tollgate/rules.d"), bus.Addr))
		if err := os.MkdirAll(filepath.Join(root, "var/lib/tollgate"), 0o700); err != nil {
			t.Fatal(err)
		}
		// With only the capabilities the installed unit grants (its
		// CapabilityBoundingSet) and no new privileges, as systemd would run it.
		unit := unitDirectives(t, filepath.Join(root, "usr/lib/systemd/system/tollgated.service"))
		var caps []string
		for _, c := range strings.Fields(strings.Join(unit["CapabilityBoundingSet"], " ")) {
			caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
		if len(caps) == 0 {
			t.Fatal("the installed unit has no CapabilityBoundingSet")
		}
		// And in a mount namespace of its own where, as with the unit's
		// ProtectSystem=strict (and ProtectHome=read-only), every file
		// system but /proc, /sys, /dev and the state directory is read-only.
		state := filepath.Join(root, "var/lib/tollgate")
		var logs bytes.Buffer
		d := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", readOnlySystem, "sh", state,
			"setpriv", "--no-new-privs", "--bounding-set=-all,"+strings.Join(caps, ","), "--",
			filepath.Join(root, "usr/bin/tollgated"), "--config", cfg)
		d.Stdout, d.Stderr = &logs, &logs
		if err := d.Start(); err != nil {
			t.Fatalf("start the installed tollgated: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- d.Wait() }()
		stopped := false
		stop := func() {
			if stopped {
				return
			}
			stopped = true
			d.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				d.Process.Kill()
				<-exited
			}
		}
		t.Cleanup(stop)

		// Wait (deadline, not a sleep) for the installed CLI to get an answer.
		cli := filepath.Join(root, "usr/bin/tollgate")
		deadline := time.Now().Add(30 * time.Second)
		var status string
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			o, err := exec.CommandContext(ctx, cli, "--bus", bus.Addr, "status").CombinedOutput()
			cancel()
			if err == nil {
				status = string(o)
				break
			}
			select {
			case err := <-exited:
				stopped = true
				t.Fatalf("the installed tollgated exited: %v\n%s", err, logs.String())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("tollgate status never answered: %v\n%s\ndaemon:\n%s", err, o, logs.String())
			}
		}
		for _, want := range []string{"mode:", "enforcing", "version:", version} {
			if !strings.Contains(status, want) {
				t.Errorf("tollgate status lacks %q:\n%s", want, status)
			}
		}
		attributesOtherUsers(t, cli, bus.Addr)
		stop()
		if _, err := os.Stat(filepath.Join(root, "var/lib/tollgate/tollgate.db")); err != nil {
			t.Errorf("the daemon kept no database in the root: %v", err)
		}
	})

	// An upgrade keeps the rules database, an admin's edit of a conffile
	// and an admin's disable of the unit (the same payload, as version -2).
	t.Run("upgrade", func(t *testing.T) {
		db := filepath.Join(root, "var/lib/tollgate/tollgate.db")
		dbBefore, err := os.ReadFile(db)
		if err != nil {
			t.Fatalf("no database from the daemon's run to keep: %v", err)
		}
		conf := filepath.Join(root, "etc/tollgate/config.toml")
		edited, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		edited = append(edited, "\n# the admin was here\nprompt_timeout = \"45s\"\n"...)
		if err := os.WriteFile(conf, edited, 0o644); err != nil {
			t.Fatal(err)
		}
		// What `systemctl disable tollgated` does to the file system.
		if err := os.Remove(wants); err != nil {
			t.Fatalf("disable the unit as an admin would: %v", err)
		}
		dpkg("-i", withVersion(t, deb, version+"-2"))
		if st := run(t, "dpkg", "--root="+root, "-s", "tollgate"); !strings.Contains(st, "Version: "+version+"-2\n") ||
			!strings.Contains(st, "Status: install ok installed") {
			t.Errorf("after the upgrade, dpkg -s:\n%s", st)
		}
		if got, _ := os.ReadFile(conf); !bytes.Equal(got, edited) {
			t.Errorf("the upgrade changed the admin's config.toml:\n%s", got)
		}
		if got, _ := os.ReadFile(db); !bytes.Equal(got, dbBefore) {
			t.Errorf("the upgrade changed the rules database (%d bytes, was %d)", len(got), len(dbBefore))
		}
		if _, err := os.Lstat(wants); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the upgrade enabled the unit the admin disabled: %v", err)
		}
	})

	// The tray package on top, then gone again without a trace.
	t.Run("tray installs and purges", func(t *testing.T) {
		withTray := tree(t, root)
		dpkg("-i", trayDebs[0])
		for _, p := range []string{"usr/bin/tollgate-tray", "usr/share/applications/tollgate-tray.desktop",
			"etc/xdg/autostart/tollgate-tray.desktop", "usr/share/icons/hicolor/scalable/apps/tollgate.svg",
			"usr/share/icons/hicolor/48x48/apps/tollgate.png", "usr/share/icons/hicolor/256x256/apps/tollgate.png",
			"usr/share/doc/tollgate-tray/copyright"} {
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				t.Errorf("installed: %v", err)
			}
		}
		for _, p := range []string{"usr/share/applications/tollgate-tray.desktop", "etc/xdg/autostart/tollgate-tray.desktop"} {
			if o, err := exec.Command("desktop-file-validate", filepath.Join(root, p)).CombinedOutput(); err != nil || len(bytes.TrimSpace(o)) > 0 {
				t.Errorf("desktop-file-validate %s: %v\n%s", p, err, o)
			}
		}
		if v := run(t, filepath.Join(root, "usr/bin/tollgate-tray"), "--version"); strings.TrimSpace(v) != "tollgate-tray "+version {
			t.Errorf("tollgate-tray --version = %q, want %q", v, version)
		}
		dpkg("--purge", "tollgate-tray")
		if left := newPaths(withTray, tree(t, root)); len(left) > 0 {
			t.Errorf("purging tollgate-tray left behind: %v", left)
		}
	})

	// Remove keeps the conffiles and the data; purge removes everything.
	dpkg("--remove", "tollgate")
	for _, p := range []string{"etc/tollgate/config.toml", "etc/tollgate/rules.d/10-dns.toml"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("remove (not purge) dropped a conffile: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/tollgated")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("remove left the daemon: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/tollgate"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/tollgate/tollgate.db"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("--purge", "tollgate")
	if st, _ := exec.Command("dpkg", "--root="+root, "-s", "tollgate").CombinedOutput(); strings.Contains(string(st), "Status: ") && !strings.Contains(string(st), "not-installed") {
		t.Errorf("after purge dpkg still knows tollgate:\n%s", st)
	}
	if left := newPaths(before, tree(t, root)); len(left) > 0 {
		t.Errorf("purge left behind: %v", left)
	}
}

// withVersion returns a copy of the .deb deb that says it is version v:
// the same payload and maintainer scripts, for an upgrade.
func withVersion(t *testing.T, deb, v string) string {
	t.Helper()
	dir := t.TempDir()
	x := filepath.Join(dir, "x")
	run(t, "dpkg-deb", "-R", deb, x)
	control := filepath.Join(x, "DEBIAN", "control")
	b, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`(?m)^Version: .*$`)
	if !version.Match(b) {
		t.Fatalf("%s has no Version:\n%s", deb, b)
	}
	if err := os.WriteFile(control, version.ReplaceAll(b, []byte("Version: "+v)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "upgrade.deb")
	run(t, "dpkg-deb", "--root-owner-group", "-b", x, out)
	return out
}

// newPaths lists the paths of after that before lacks, but dpkg's own
// records.
func newPaths(before, after []string) []string {
	var left []string
	for _, p := range after {
		if !slices.Contains(before, p) && !strings.HasPrefix(p, "/var/lib/dpkg/") {
			left = append(left, p)
		}
	}
	return left
}

// lintian runs lintian on a .deb: warnings are printed, errors fail.
func lintian(t *testing.T, deb string) {
	t.Helper()
	o, err := exec.Command("lintian", "--fail-on", "error", deb).CombinedOutput()
	t.Logf("lintian %s:\n%s", filepath.Base(deb), o)
	if err != nil {
		t.Fatalf("lintian found errors: %v", err)
	}
	if regexp.MustCompile(`(?m)^E: `).Match(o) {
		t.Fatal("lintian printed errors")
	}
}

// samePayload checks the .deb and the .rpm carry the same files, but the
// .deb's Debian-only ones; it returns the rpm's list.
func samePayload(t *testing.T, deb, rpm string, debOnly ...string) []string {
	t.Helper()
	var d []string
	for _, p := range payload(run(t, "dpkg-deb", "-c", deb), func(f []string) string { return f[5] }) {
		if !slices.Contains(debOnly, p) {
			d = append(d, p)
		}
	}
	r := payload(run(t, "rpm", "-qp", "--qf", `[%{FILEMODES:perms} %{FILENAMES}\n]`, rpm), func(f []string) string { return f[1] })
	if !slices.Equal(d, r) {
		t.Errorf("payloads differ:\n.deb: %v\n.rpm: %v", d, r)
	}
	return r
}

// readOnlySystem is a shell script run by unshare in a private mount
// namespace: $1 (the state directory) stays writable, every other mount but
// the kernel's API file systems becomes read-only (ProtectSystem=strict),
// then the rest of the arguments run.
const readOnlySystem = `set -e
state=$1; shift
mount --bind "$state" "$state"
awk '{print $5}' /proc/self/mountinfo | while read -r m; do
	case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|"$state") continue ;; esac
	mount -o remount,bind,ro "$m" 2>/dev/null || [ "$m" != / ] || { echo "cannot make / read-only" >&2; exit 1; }
done
if touch "$state/../.read-only-probe" 2>/dev/null; then echo "the system is not read-only" >&2; exit 1; fi
touch "$state/.rw-probe" && rm "$state/.rw-probe"
exec "$@"
`

// writeConfig writes a daemon configuration: the installed config.toml (all
// commented) followed by the test's settings.
func writeConfig(t testing.TB, path, root, extra string) {
	t.Helper()
	base, err := os.ReadFile(filepath.Join(root, "etc/tollgate/config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(base, "\n# test settings\n"+extra...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tree lists every path under root (root-relative, "/"-prefixed).
func tree(t testing.TB, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		paths = append(paths, "/"+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// verifyUnit runs systemd-analyze verify and security on the installed unit
// in a root of its own holding the unit, the installed daemon and stand-ins
// for the programs and units it refers to (systemd is not PID 1 here, so
// the unit cannot be started; this is the check systemd offers offline).
func verifyUnit(t *testing.T, installed string) {
	vroot := t.TempDir()
	unitDir := filepath.Join(vroot, "usr/lib/systemd/system")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(unitDir, 0o755))
	must(os.MkdirAll(filepath.Join(vroot, "usr/bin"), 0o755))
	must(os.MkdirAll(filepath.Join(vroot, "bin"), 0o755))
	unit, err := os.ReadFile(filepath.Join(installed, "usr/lib/systemd/system/tollgated.service"))
	must(err)
	must(os.WriteFile(filepath.Join(unitDir, "tollgated.service"), unit, 0o644))
	daemon, err := os.ReadFile(filepath.Join(installed, "usr/bin/tollgated"))
	must(err)
	must(os.WriteFile(filepath.Join(vroot, "usr/bin/tollgated"), daemon, 0o755))
	for _, p := range []string{"bin/sh", "bin/kill"} {
		must(os.WriteFile(filepath.Join(vroot, p), []byte("#!/bin/true\n"), 0o755))
	}
	for _, u := range []string{"network-pre.target", "local-fs.target", "shutdown.target", "multi-user.target"} {
		must(os.WriteFile(filepath.Join(unitDir, u), []byte("[Unit]\nDefaultDependencies=no\nDescription=stand-in for "+u+"\n"), 0o644))
	}
	must(os.WriteFile(filepath.Join(unitDir, "dbus.socket"), []byte("[Unit]\nDefaultDependencies=no\nDescription=stand-in for dbus.socket\n[Socket]\nListenStream=/run/dbus/system_bus_socket\n"), 0o644))
	must(os.WriteFile(filepath.Join(unitDir, "dbus.service"), []byte("[Unit]\nDefaultDependencies=no\nDescription=stand-in for dbus.service\n[Service]\nExecStart=/bin/sh\n"), 0o644))
	o, err := exec.Command("systemd-analyze", "verify", "--root="+vroot, "tollgated.service").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(o)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, o)
	}
	// The hardening as systemd scores it (lower is better; 3.3 when written).
	o, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--root="+vroot, "--threshold=40", "--no-pager", "tollgated.service").CombinedOutput()
	t.Logf("systemd-analyze security:\n%s", lastLines(string(o), 2))
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 4.0 (or failed): %v\n%s", err, o)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// attributesOtherUsers makes a connection as user nobody from a program
// nobody owns and only its owner may read (mode 0711), and checks that the
// daemon, with only the unit's capabilities, named that program and hashed
// it: CAP_SYS_PTRACE (another user's /proc/PID/exe and fd) and
// CAP_DAC_READ_SEARCH (reading the unreadable executable) at work.
func attributesOtherUsers(t *testing.T, cli, busAddr string) {
	t.Helper()
	const nobody = 65534
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	dir, err := os.MkdirTemp("", "tollgate-pkg-exe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bash, err := os.ReadFile("/bin/bash")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "bash")
	if err := os.WriteFile(exe, bash, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(exe, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(exe, 0o711); err != nil {
		t.Fatal(err)
	}
	// Rejected at once (default_action = "reject", nobody to ask).
	conn := exec.Command("setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups", "--",
		exe, "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", port))
	if o, err := conn.CombinedOutput(); err == nil {
		t.Fatalf("a connection nobody's rules allow went through: %s", o)
	}
	sum := sha256.Sum256(bash)
	want := hex.EncodeToString(sum[:])
	deadline := time.Now().Add(20 * time.Second)
	for {
		o, err := exec.Command(cli, "--bus", busAddr, "--json", "log", "--exe", exe).CombinedOutput()
		if err != nil {
			t.Fatalf("tollgate log: %v\n%s", err, o)
		}
		var entries []map[string]any
		if err := json.Unmarshal(o, &entries); err != nil {
			t.Fatalf("tollgate --json log: %v\n%s", err, o)
		}
		for _, e := range entries {
			if e["remote_port"] == float64(port) {
				if e["exe"] != exe || e["exe_sha256"] != want || e["uid"] != float64(nobody) || e["action"] != "reject" {
					t.Fatalf("attribution under the unit's capabilities: got %v, want exe %s sha256 %s uid %d rejected", e, exe, want, nobody)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			all, _ := exec.Command(cli, "--bus", busAddr, "--json", "log").CombinedOutput()
			t.Fatalf("no log entry names %s (not attributed?); the whole log:\n%s", exe, all)
		}
		time.Sleep(100 * time.Millisecond) // polling the log for a condition, with a deadline
	}
}
