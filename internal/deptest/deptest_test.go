package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/tollgate-fw/tollgate"

// pkg is what the walls need of `go list -json`.
type pkg struct {
	ImportPath string
	Standard   bool
	Deps       []string
	CgoFiles   []string
	Error      *struct{ Err string }
	DepsErrors []*struct{ Err string }
}

func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no go command: %v", err)
	}
	return p
}

// goList runs `go list -e -json [-deps] patterns` with extra environment.
func goList(t *testing.T, env []string, deps bool, patterns ...string) []pkg {
	t.Helper()
	args := []string{"list", "-e", "-json=ImportPath,Standard,Deps,CgoFiles,Error,DepsErrors"}
	if deps {
		args = append(args, "-deps")
	}
	cmd := exec.Command(goTool(t), append(args, patterns...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list %v: no packages", patterns)
	}
	return pkgs
}

// forbiddenDeps lists, for each root package, the dependencies (or the
// package itself) whose import path starts with one of the prefixes.
func forbiddenDeps(roots []pkg, prefixes ...string) []string {
	var bad []string
	for _, r := range roots {
		for _, d := range append([]string{r.ImportPath}, r.Deps...) {
			for _, p := range prefixes {
				if d == p || strings.HasPrefix(d, p+"/") {
					bad = append(bad, fmt.Sprintf("%s depends on %s", r.ImportPath, d))
				}
			}
		}
	}
	return bad
}

// cgoProblems lists packages (as listed with CGO_ENABLED=0 -deps) that
// have cgo files or could not be loaded: either means no static build.
func cgoProblems(pkgs []pkg) []string {
	var bad []string
	for _, p := range pkgs {
		if len(p.CgoFiles) > 0 {
			bad = append(bad, fmt.Sprintf("%s has cgo files %v", p.ImportPath, p.CgoFiles))
		}
		if p.Error != nil {
			bad = append(bad, fmt.Sprintf("%s: %s", p.ImportPath, p.Error.Err))
		}
		for _, e := range p.DepsErrors {
			bad = append(bad, fmt.Sprintf("%s: dependency: %s", p.ImportPath, e.Err))
		}
	}
	return bad
}

// nonStandard lists the dependencies of root that are outside the standard
// library.
func nonStandard(root string, deps []pkg) []string {
	var bad []string
	for _, p := range deps {
		if !p.Standard && p.ImportPath != root {
			bad = append(bad, p.ImportPath)
		}
	}
	return bad
}

func report(t *testing.T, wall string, bad []string) {
	t.Helper()
	if len(bad) > 0 {
		t.Errorf("%s:\n  %s", wall, strings.Join(bad, "\n  "))
	}
}

func TestUINeverImportsDaemon(t *testing.T) {
	roots := goList(t, nil, false, module+"/ui/...")
	// The listing must carry dependencies, or every wall would pass.
	if got := forbiddenDeps(roots, module+"/dbus"); len(got) == 0 {
		t.Fatalf("go list shows no ui package depending on dbus: %+v", roots)
	}
	report(t, "ui/ must not import daemon/ (speak through dbus/ and shared/)", forbiddenDeps(roots, module+"/daemon"))
}

func TestDBusImportsNeitherDaemonNorUI(t *testing.T) {
	report(t, "dbus/ must not import daemon/ or ui/",
		forbiddenDeps(goList(t, nil, false, module+"/dbus/..."), module+"/daemon", module+"/ui", "fyne.io"))
}

var staticRoots = []string{module + "/daemon/...", module + "/ui/cmd/tollgate"}

func TestDaemonAndCLINeverDependOnFyne(t *testing.T) {
	report(t, "daemon/ and the tollgate CLI must not depend on Fyne",
		forbiddenDeps(goList(t, nil, false, staticRoots...), "fyne.io"))
}

func TestDaemonAndCLIBuildWithoutCgo(t *testing.T) {
	pkgs := goList(t, []string{"CGO_ENABLED=0"}, true, staticRoots...)
	report(t, "daemon/ and the tollgate CLI must build with CGO_ENABLED=0", cgoProblems(pkgs))
	report(t, "daemon/ and the tollgate CLI must not depend on Fyne (CGO_ENABLED=0)",
		forbiddenDeps(pkgs, "fyne.io"))
	if testing.Short() {
		return
	}
	cmd := exec.Command(goTool(t), append([]string{"build", "-o", os.DevNull}, module+"/ui/cmd/tollgate")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("CGO_ENABLED=0 go build tollgate: %v\n%s", err, out)
	}
}

// viewModels are the UI's plain-Go parts: tested without Fyne, so they
// must not import it (STYLE.md: pure logic never imports Fyne).
var viewModels = []string{
	module + "/ui/agent/...",
	module + "/ui/desktop/...",
	module + "/ui/tray/prompt/promptmodel/...",
	module + "/ui/tray/rules/rulemodel/...",
	module + "/ui/tray/connections/connmodel/...",
}

func TestViewModelsNeverDependOnFyne(t *testing.T) {
	pkgs := goList(t, nil, false, viewModels...)
	if len(pkgs) < len(viewModels) {
		t.Fatalf("go list found %d packages for %d patterns: a view-model moved?", len(pkgs), len(viewModels))
	}
	for _, p := range pkgs {
		if p.Error != nil {
			t.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
	}
	report(t, "UI view-models and ui/desktop must not depend on Fyne", forbiddenDeps(pkgs, "fyne.io"))
}

func TestSharedIsStandardLibraryOnly(t *testing.T) {
	report(t, "shared/ must import only the standard library",
		nonStandard(module+"/shared", goList(t, nil, true, module+"/shared")))
}

// TestWallChecks shows the checks above catch what they are for.
func TestWallChecks(t *testing.T) {
	roots := []pkg{
		{ImportPath: module + "/ui/cli", Deps: []string{"fmt", module + "/dbus", module + "/daemon/rules"}},
		{ImportPath: module + "/ui/tray", Deps: []string{"fyne.io/fyne/v2", module + "/daemonish"}},
	}
	if got := forbiddenDeps(roots, module+"/daemon"); len(got) != 1 || !strings.Contains(got[0], "daemon/rules") {
		t.Errorf("forbiddenDeps daemon = %v", got)
	}
	if got := forbiddenDeps(roots, "fyne.io"); len(got) != 1 || !strings.Contains(got[0], "ui/tray") {
		t.Errorf("forbiddenDeps fyne = %v", got)
	}
	pkgs := []pkg{
		{ImportPath: "os/user", Standard: true},
		{ImportPath: "github.com/x/gl", CgoFiles: []string{"gl.go"}},
		{ImportPath: "github.com/x/onlycgo", Error: &struct{ Err string }{"build constraints exclude all Go files"}},
		{ImportPath: module + "/shared"},
	}
	if got := cgoProblems(pkgs); len(got) != 2 {
		t.Errorf("cgoProblems = %v", got)
	}
	if got := nonStandard(module+"/shared", pkgs); len(got) != 2 || got[0] != "github.com/x/gl" {
		t.Errorf("nonStandard = %v", got)
	}
}
