package desktop

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tree is a fake filesystem root: data dirs, bin dirs and programs under one
// temp dir.
type tree struct {
	t    *testing.T
	root string
}

func newTree(t *testing.T) *tree { return &tree{t: t, root: t.TempDir()} }

func (tr *tree) path(rel string) string { return filepath.Join(tr.root, filepath.FromSlash(rel)) }

func (tr *tree) write(rel, content string, mode os.FileMode) string {
	tr.t.Helper()
	p := tr.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		tr.t.Fatal(err)
	}
	return p
}

func (tr *tree) exe(rel string) string { return tr.write(rel, "#!/bin/true\n", 0o755) }

func (tr *tree) app(dataDir, rel, body string) string {
	return tr.write(dataDir+"/applications/"+rel, "[Desktop Entry]\nType=Application\n"+body, 0o644)
}

func (tr *tree) symlink(target, rel string) string {
	tr.t.Helper()
	p := tr.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		tr.t.Fatal(err)
	}
	return p
}

// fakeClock is advanced by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

func (tr *tree) index(dataDirs ...string) (*Index, *fakeClock) {
	var dirs []string
	for _, d := range dataDirs {
		dirs = append(dirs, tr.path(d))
	}
	ix := NewIndexOptions(Options{Dirs: dirs, BinDirs: []string{tr.path("usr/local/bin"), tr.path("usr/bin")}, Locale: "de_DE.UTF-8"})
	clk := &fakeClock{}
	clk.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	ix.now = clk.now
	return ix, clk
}

func TestLookupByExe(t *testing.T) {
	tr := newTree(t)
	gimp := tr.exe("usr/bin/gimp-2.10")
	real := tr.exe("usr/lib/firefox/firefox")
	ffLink := tr.symlink(real, "usr/bin/firefox")
	local := tr.exe("usr/local/bin/tool")
	tr.exe("usr/bin/tool") // shadowed by /usr/local/bin (BinDirs order)
	tr.app("home", "gimp.desktop", "Name=GIMP\nName[de]=GIMP-Bildbearbeitung\nComment=Edit images\nExec=gimp-2.10 %U\nIcon=gimp\n")
	tr.app("share", "firefox.desktop", "Name=Firefox\nExec=firefox %u\nIcon="+tr.path("icons/ff.png")+"\n")
	tr.write("icons/ff.png", "png", 0o644)
	tr.app("share", "tool.desktop", "Name=Tool\nExec=env GDK_BACKEND=x11 -u FOO BAR=1 tool --x\n")
	ix, _ := tr.index("home", "share")

	for _, tc := range []struct {
		exe, id, name string
		kind          MatchKind
	}{
		{gimp, "gimp.desktop", "GIMP-Bildbearbeitung", MatchExe},
		{ffLink, "firefox.desktop", "Firefox", MatchExe},
		{real, "firefox.desktop", "Firefox", MatchExe},                        // the symlink target, as /proc/pid/exe reports it
		{tr.path("usr/bin//firefox"), "firefox.desktop", "Firefox", MatchExe}, // uncleaned path
		{local, "tool.desktop", "Tool", MatchExe},                             // through env and its options
		{"/elsewhere/gimp-2.10", "gimp.desktop", "GIMP-Bildbearbeitung", MatchBasename},
	} {
		a, ok := ix.Lookup(tc.exe, "")
		if !ok || a.ID != tc.id || a.Name != tc.name || a.Match != tc.kind {
			t.Errorf("Lookup(%q) = %+v, %v; want id %s name %q match %s", tc.exe, a, ok, tc.id, tc.name, tc.kind)
		}
	}
	a, _ := ix.Lookup(gimp, "")
	want := App{ID: "gimp.desktop", Name: "GIMP-Bildbearbeitung", Comment: "Edit images", Exec: "gimp-2.10", IconName: "gimp",
		File: tr.path("home/applications/gimp.desktop"), Executable: gimp, Match: MatchExe}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Lookup(gimp) =\n %+v\nwant\n %+v", a, want)
	}
	if a, _ := ix.Lookup(real, ""); a.IconPath != tr.path("icons/ff.png") || a.Executable != ffLink {
		t.Errorf("firefox: IconPath %q Executable %q", a.IconPath, a.Executable)
	}
	if a, _ := ix.Lookup(tr.path("usr/bin/tool"), ""); a.Match != MatchBasename {
		t.Errorf("tool in the shadowed bin dir matched %s, want only by basename", a.Match)
	}
	for _, exe := range []string{"", "/usr/bin/unknown", "relative"} {
		if a, ok := ix.Lookup(exe, ""); ok {
			t.Errorf("Lookup(%q) = %+v, want none", exe, a)
		}
	}
	// With an app id, a basename is not enough: a sandboxed /app/bin/gimp-2.10 is not the host's GIMP.
	if a, ok := ix.Lookup("/app/bin/gimp-2.10", "flatpak:org.other.App"); ok {
		t.Errorf("Lookup with unknown flatpak id = %+v, want none", a)
	}
}

func TestLookupPrecedence(t *testing.T) {
	tr := newTree(t)
	bin := tr.exe("usr/bin/editor")
	tr.exe("usr/bin/python3")
	tr.exe("usr/bin/hidden-app")
	tr.app("home", "editor.desktop", "Name=User Editor\nExec=editor\n")
	tr.app("share", "editor.desktop", "Name=System Editor\nExec=editor\n")                      // shadowed by id
	tr.app("share", "aa-helper.desktop", "Name=Helper\nNoDisplay=true\nExec=editor --helper\n") // NoDisplay loses
	tr.app("share", "script.desktop", "Name=Script\nExec=python3 /usr/share/script/main.py\n")  // interpreter: no key
	tr.app("share", "flatpak-run.desktop", "Name=Run\nExec=/usr/bin/flatpak run org.x.Y\n")
	py := tr.exe("usr/bin/python3.11")
	tr.app("share", "python3.11.desktop", "Name=Python (v3.11)\nExec=/usr/bin/python3.11\nTerminal=true\n") // the interpreter's own entry
	tr.app("home", "hidden-app.desktop", "Name=Gone\nHidden=true\nExec=hidden-app\n")
	tr.app("share", "hidden-app.desktop", "Name=Shadowed\nExec=hidden-app\n")
	tr.write("share/applications/link.desktop", "[Desktop Entry]\nType=Link\nName=Link\nURL=http://x\n", 0o644)
	tr.app("share", "broken.desktop", "Name=Broken\nExec=editor\nthis is not a line\n")
	tr.app("share", "notinstalled.desktop", "Name=Absent\nTryExec=/nonexistent/editor\nExec=editor\n")
	tr.write("share/applications/readme.txt", "not a desktop file", 0o644)
	ix, _ := tr.index("home", "share")

	if a, ok := ix.Lookup(bin, ""); !ok || a.Name != "User Editor" {
		t.Errorf("Lookup(editor) = %+v, %v; want the user's entry", a, ok)
	}
	if a, ok := ix.Lookup(tr.path("usr/bin/python3"), ""); ok {
		t.Errorf("python3 maps to %+v; interpreters must not be keys", a)
	}
	if a, ok := ix.Lookup(py, ""); !ok || a.Name != "Python (v3.11)" {
		t.Errorf("Lookup(python3.11) = %+v, %v; the interpreter's own entry names it", a, ok)
	}
	if a, ok := ix.Lookup("/usr/bin/flatpak", ""); ok {
		t.Errorf("flatpak maps to %+v; launchers must not be keys", a)
	}
	if a, ok := ix.Lookup(tr.path("usr/bin/hidden-app"), ""); ok {
		t.Errorf("hidden entry shadows, got %+v", a)
	}
	ids := map[string]bool{}
	for _, a := range ix.Apps() {
		ids[a.ID] = true
	}
	want := map[string]bool{"editor.desktop": true, "aa-helper.desktop": true, "script.desktop": true, "flatpak-run.desktop": true, "python3.11.desktop": true}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("Apps ids = %v, want %v", ids, want)
	}
}

func TestLookupNoDisplayStillFound(t *testing.T) {
	tr := newTree(t)
	bin := tr.exe("usr/bin/daemonish")
	tr.app("share", "daemonish.desktop", "Name=Daemonish\nNoDisplay=true\nExec=daemonish\n")
	ix, _ := tr.index("share")
	if a, ok := ix.Lookup(bin, ""); !ok || a.Name != "Daemonish" {
		t.Errorf("Lookup = %+v, %v; a NoDisplay entry still names its program", a, ok)
	}
}

func TestLookupSubdirID(t *testing.T) {
	tr := newTree(t)
	bin := tr.exe("usr/bin/kwrite")
	tr.app("share", "kde4/kwrite.desktop", "Name=KWrite\nExec=kwrite %U\n")
	ix, _ := tr.index("share")
	if a, ok := ix.Lookup(bin, ""); !ok || a.ID != "kde4-kwrite.desktop" {
		t.Errorf("Lookup = %+v, %v; want id kde4-kwrite.desktop", a, ok)
	}
}

func TestLookupFlatpakAndSnap(t *testing.T) {
	tr := newTree(t)
	tr.app("var/lib/flatpak/exports/share", "org.mozilla.firefox.desktop",
		"Name=Firefox\nExec=/usr/bin/flatpak run --branch=stable --command=firefox org.mozilla.firefox @@u %u @@\nX-Flatpak=org.mozilla.firefox\nIcon=org.mozilla.firefox\n")
	tr.app("var/lib/flatpak/exports/share", "com.example.Tool.editor.desktop",
		"Name=Tool Editor\nExec=/usr/bin/flatpak run com.example.Tool\nX-Flatpak=com.example.Tool\n")
	tr.app("var/lib/snapd/desktop", "spotify_spotify.desktop", "Name=Spotify\nExec=env BAMF_DESKTOP_FILE_HINT=/x /snap/bin/spotify %U\n")
	tr.app("var/lib/snapd/desktop", "code_code-url-handler.desktop", "Name=Code URL\nExec=/snap/bin/code --open-url %U\n")
	tr.app("var/lib/snapd/desktop", "code_code.desktop", "Name=Code\nExec=/snap/bin/code %F\n")
	tr.app("var/lib/snapd/desktop", "zz_other.desktop", "Name=Instance\nX-SnapInstanceName=thing_2\nExec=/snap/bin/thing_2\n")
	tr.app("share", "not_a_snap.desktop", "Name=NotSnap\nExec=x\n")
	tr.write("var/lib/flatpak/exports/share/icons/hicolor/64x64/apps/org.mozilla.firefox.png", "png", 0o644)
	ix, _ := tr.index("share", "var/lib/flatpak/exports/share", "var/lib/snapd/desktop")

	for _, tc := range []struct{ app, name string }{
		{"flatpak:org.mozilla.firefox", "Firefox"},
		{"flatpak:com.example.Tool", "Tool Editor"}, // by X-Flatpak when no file is named after the id
		{"snap:spotify", "Spotify"},
		{"snap:code", "Code"}, // <name>_<name>.desktop preferred
		{"snap:thing_2", "Instance"},
	} {
		a, ok := ix.Lookup("/app/bin/whatever", tc.app)
		if !ok || a.Name != tc.name {
			t.Errorf("Lookup(app %q) = %+v, %v; want %q", tc.app, a, ok, tc.name)
		}
	}
	if a, _ := ix.Lookup("", "flatpak:org.mozilla.firefox"); a.Match != MatchFlatpak ||
		a.IconPath != tr.path("var/lib/flatpak/exports/share/icons/hicolor/64x64/apps/org.mozilla.firefox.png") {
		t.Errorf("flatpak firefox: match %s icon %q", a.Match, a.IconPath)
	}
	for _, app := range []string{"snap:not", "snap:", "flatpak:", "snap:other", "flatpak:org.unknown"} {
		if a, ok := ix.Lookup("", app); ok {
			t.Errorf("Lookup(app %q) = %+v, want none", app, a)
		}
	}
}

func TestIcons(t *testing.T) {
	tr := newTree(t)
	for _, f := range []string{
		"share/icons/hicolor/16x16/apps/small.png",
		"share/icons/hicolor/256x256/apps/small.png",
		"share/icons/hicolor/scalable/apps/vector.svg",
		"share/icons/hicolor/128x128/apps/vector.png",
		"share/icons/hicolor/48x48/apps/both.png",
		"share/icons/hicolor/scalable/apps/both.svg",
		"home/icons/hicolor/64x64/apps/both.png",
		"share/pixmaps/old.xpm",
		"share/pixmaps/pix.png",
		"share/icons/hicolor/48x48/apps/ext.png",
		"abs/icon.svg",
	} {
		tr.write(f, "x", 0o644)
	}
	dirs := []string{tr.path("home"), tr.path("share")}
	for _, tc := range []struct{ name, want string }{
		{"both", "home/icons/hicolor/64x64/apps/both.png"}, // 48–64 px PNG in any dir before SVG
		{"vector", "share/icons/hicolor/scalable/apps/vector.svg"},
		{"small", "share/icons/hicolor/256x256/apps/small.png"},
		{"pix", "share/pixmaps/pix.png"},
		{"ext.png", "share/icons/hicolor/48x48/apps/ext.png"},
		{"old", ""}, // XPM cannot be drawn
		{tr.path("abs/icon.svg"), "abs/icon.svg"},
		{tr.path("abs/missing.png"), ""},
		{"../../../etc/passwd", ""},
		{"", ""},
		{"missing", ""},
	} {
		want := ""
		if tc.want != "" {
			want = tr.path(tc.want)
		}
		if got := resolveIcon(dirs, tc.name); got != want {
			t.Errorf("resolveIcon(%q) = %q, want %q", tc.name, got, want)
		}
	}
}

func TestReloadOnChange(t *testing.T) {
	tr := newTree(t)
	bin := tr.exe("usr/bin/newapp")
	ix, clk := tr.index("share")
	if _, ok := ix.Lookup(bin, ""); ok {
		t.Fatal("found an app before it was installed")
	}
	// Install: the applications dir appears. Not seen before the interval passes.
	tr.app("share", "newapp.desktop", "Name=New App\nExec=newapp\n")
	if _, ok := ix.Lookup(bin, ""); ok {
		t.Fatal("rescanned before the check interval passed")
	}
	clk.add(DefaultCheckInterval)
	if a, ok := ix.Lookup(bin, ""); !ok || a.Name != "New App" {
		t.Fatalf("after install: %+v, %v", a, ok)
	}
	// Edit in place in a subdir: the subdir's mtime is what changes.
	p := tr.app("share", "sub/other.desktop", "Name=Other\nExec=other\n")
	clk.add(DefaultCheckInterval)
	if _, ok := ix.Lookup(tr.path("x/other"), ""); !ok {
		t.Fatal("entry in a new subdir not found")
	}
	tr.write("share/applications/sub/other.desktop", "[Desktop Entry]\nType=Application\nName=Renamed\nExec=other\n", 0o644)
	tr.write("share/applications/sub/tmp.desktop", "", 0o644) // what an installer's rename leaves: dir mtime changes
	if err := os.Remove(tr.path("share/applications/sub/tmp.desktop")); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Dir(p), future, future); err != nil { // mtime granularity must not hide the change
		t.Fatal(err)
	}
	clk.add(DefaultCheckInterval)
	if a, _ := ix.Lookup(tr.path("x/other"), ""); a.Name != "Renamed" {
		t.Fatalf("after edit: %+v", a)
	}
	// Uninstall.
	if err := os.RemoveAll(tr.path("share/applications")); err != nil {
		t.Fatal(err)
	}
	clk.add(DefaultCheckInterval)
	if a, ok := ix.Lookup(bin, ""); ok {
		t.Fatalf("after uninstall: %+v", a)
	}
}

func TestConcurrentLookup(t *testing.T) {
	tr := newTree(t)
	var bins []string
	for i := range 20 {
		bins = append(bins, tr.exe(fmt.Sprintf("usr/bin/app%d", i)))
		tr.app("share", fmt.Sprintf("app%d.desktop", i), fmt.Sprintf("Name=App %d\nExec=app%d\nIcon=app%d\n", i, i, i))
	}
	ix, clk := tr.index("share")
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := (g + i) % len(bins)
				if g == 0 && i%20 == 0 {
					clk.add(DefaultCheckInterval)
					future := time.Now().Add(time.Duration(i) * time.Minute)
					_ = os.Chtimes(tr.path("share/applications"), future, future)
				}
				a, ok := ix.Lookup(bins[n], "")
				if want := fmt.Sprintf("App %d", n); !ok || a.Name != want {
					errs <- fmt.Sprintf("Lookup(%s) = %+v, %v", bins[n], a, ok)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestDefaultDirs(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("XDG_DATA_DIRS", "")
	want := []string{"/home/u/.local/share", "/usr/local/share", "/usr/share",
		"/home/u/.local/share/flatpak/exports/share", "/var/lib/flatpak/exports/share", "/var/lib/snapd/desktop"}
	if got := DefaultDirs(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultDirs() = %q, want %q", got, want)
	}
	t.Setenv("XDG_DATA_HOME", "/data/home/")
	t.Setenv("XDG_DATA_DIRS", "/opt/share:relative:/usr/share:/var/lib/flatpak/exports/share")
	want = []string{"/data/home", "/opt/share", "/usr/share",
		"/var/lib/flatpak/exports/share", "/home/u/.local/share/flatpak/exports/share", "/var/lib/snapd/desktop"}
	if got := DefaultDirs(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultDirs() = %q, want %q", got, want)
	}
}

func TestOversizedFileSkipped(t *testing.T) {
	tr := newTree(t)
	bin := tr.exe("usr/bin/big")
	tr.app("share", "big.desktop", "Name=Big\nExec=big\n#"+string(make([]byte, MaxFileSize))+"\n")
	ix, _ := tr.index("share")
	if a, ok := ix.Lookup(bin, ""); ok {
		t.Errorf("oversized file indexed: %+v", a)
	}
}

func BenchmarkLookup(b *testing.B) {
	tr := newTree(&testing.T{})
	defer os.RemoveAll(tr.root)
	var bins []string
	for i := range 500 {
		bins = append(bins, tr.exe(fmt.Sprintf("usr/bin/app%d", i)))
		tr.app("share", fmt.Sprintf("app%d.desktop", i), fmt.Sprintf("Name=App %d\nName[de]=Anw %d\nExec=app%d %%U\nIcon=app%d\n", i, i, i, i))
		tr.write(fmt.Sprintf("share/icons/hicolor/48x48/apps/app%d.png", i), "png", 0o644)
	}
	ix, _ := tr.index("share")
	for _, exe := range bins { // warm: scan and icon cache
		ix.Lookup(exe, "")
	}
	b.Run("exe", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := ix.Lookup(bins[i%len(bins)], ""); !ok {
				b.Fatal("not found")
			}
			i++
		}
	})
	b.Run("basename", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := ix.Lookup("/opt/x/app7", ""); !ok {
				b.Fatal("not found")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ix.Lookup("/usr/bin/none", "")
		}
	})
}

func BenchmarkScan(b *testing.B) {
	tr := newTree(&testing.T{})
	defer os.RemoveAll(tr.root)
	for i := range 300 {
		tr.exe(fmt.Sprintf("usr/bin/app%d", i))
		tr.app("share", fmt.Sprintf("app%d.desktop", i), fmt.Sprintf("Name=App %d\nName[de]=Anw %d\nComment=Does %d\nExec=app%d %%U\nIcon=app%d\nCategories=Utility;\n", i, i, i, i, i))
	}
	ix, _ := tr.index("share")
	b.ReportAllocs()
	for b.Loop() {
		ix.Reload()
	}
}

func BenchmarkParse(b *testing.B) {
	data := []byte(firefox)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
