package packaging

import (
	"debug/elf"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// checkTrayPackages checks the tollgate-tray .deb and .rpm that
// TestIntegrationPackages built: lintian, control fields, conffiles, the
// same payload in both, and that every library the tray binary links
// against is provided by a declared dependency (nfpm does not compute
// them: packaging/nfpm-tray.yaml lists them by hand, this keeps the list
// honest).
func checkTrayPackages(t *testing.T, deb, rpm, debVersion string) {
	lintian(t, deb)

	ctl := run(t, "dpkg-deb", "-f", deb, "Package", "Depends")
	if !strings.Contains(ctl, "Package: tollgate-tray\n") || !strings.Contains(ctl, "tollgate (= "+debVersion+")") {
		t.Errorf("control: want tollgate-tray depending on tollgate (= %s):\n%s", debVersion, ctl)
	}
	var depends []string
	for _, d := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Depends")), ",") {
		for _, alt := range strings.Split(d, "|") {
			if f := strings.Fields(alt); len(f) > 0 {
				depends = append(depends, f[0])
			}
		}
	}
	if conf := run(t, "dpkg-deb", "-I", deb, "conffiles"); !strings.Contains(conf, "/etc/xdg/autostart/tollgate-tray.desktop\n") {
		t.Errorf("conffiles lack the autostart entry:\n%s", conf)
	}

	info := run(t, "rpm", "-qpi", rpm)
	if !strings.Contains(info, "Name        : tollgate-tray") {
		t.Errorf("rpm -qpi:\n%s", info)
	}
	requires := run(t, "rpm", "-qp", "--requires", rpm)
	if !regexp.MustCompile(`(?m)^tollgate = ` + regexp.QuoteMeta(debVersion) + `$`).MatchString(requires) {
		t.Errorf("rpm requires lacks tollgate = %s:\n%s", debVersion, requires)
	}
	if conf := run(t, "rpm", "-qpc", rpm); !strings.Contains(conf, "/etc/xdg/autostart/tollgate-tray.desktop\n") {
		t.Errorf("rpm config files lack the autostart entry:\n%s", conf)
	}
	samePayload(t, deb, rpm, "/usr/share/doc/tollgate-tray/changelog.Debian.gz")

	// The libraries the binary links against, from its ELF header.
	dir := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, dir)
	f, err := elf.Open(filepath.Join(dir, "usr/bin/tollgate-tray"))
	if err != nil {
		t.Fatalf("the packaged tray binary: %v", err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil || len(libs) == 0 {
		t.Fatalf("the tray binary's libraries: %v %v (it must be linked dynamically: cgo)", libs, err)
	}
	soSuffix := ""
	if f.Class == elf.ELFCLASS64 {
		soSuffix = "()(64bit)"
	}
	for _, lib := range libs {
		// Which Debian package gives it on this machine (make deps
		// installed the build's -dev packages, which pull them in).
		owner := strings.TrimSpace(run(t, "dpkg-query", "-S", "*/"+lib))
		pkg, _, _ := strings.Cut(strings.Split(owner, "\n")[0], ":")
		if !slices.Contains(depends, pkg) {
			t.Errorf("the tray links %s (Debian package %s), which its Depends lack: %v", lib, pkg, depends)
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(lib+soSuffix) + `$`).MatchString(requires) {
			t.Errorf("the tray links %s, which its rpm Requires lack (%s%s):\n%s", lib, lib, soSuffix, requires)
		}
	}
	t.Logf("tollgate-tray links %v (%s)", libs, runtime.GOARCH)
}
