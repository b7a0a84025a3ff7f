package assets

import (
	"bytes"
	"encoding/xml"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-fw/tollgate/ui/desktop"
)

// decode checks a PNG: it decodes, has the declared size, and is not blank
// (it has transparent and opaque pixels, and more than one opaque colour).
func decode(t *testing.T, name string, data []byte, size int) image.Image {
	t.Helper()
	if len(data) == 0 {
		t.Fatalf("%s: no bytes", name)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: decode PNG: %v", name, err)
	}
	if b := img.Bounds(); b.Dx() != size || b.Dy() != size {
		t.Fatalf("%s: size %dx%d, want %dx%d", name, b.Dx(), b.Dy(), size, size)
	}
	var transparent, opaque int
	colours := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			switch a {
			case 0:
				transparent++
			case 0xffff:
				opaque++
				colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			}
		}
	}
	total := size * size
	if transparent < total/20 || opaque < total/4 {
		t.Errorf("%s: %d transparent and %d opaque pixels of %d: blank or unshaped", name, transparent, opaque, total)
	}
	if len(colours) < 2 {
		t.Errorf("%s: %d opaque colours: no glyph", name, len(colours))
	}
	return img
}

// diff counts the pixels whose colour or alpha differ by more than a little.
func diff(a, b image.Image) int {
	n := 0
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, a1 := a.At(x, y).RGBA()
			r2, g2, b2, a2 := b.At(x, y).RGBA()
			d := func(p, q uint32) bool { return p>>8 > q>>8+32 || q>>8 > p>>8+32 }
			if d(r1, r2) || d(g1, g2) || d(b1, b2) || d(a1, a2) {
				n++
			}
		}
	}
	return n
}

// grey renders an image as luminance and alpha only: what someone who cannot
// tell the colours apart sees.
func grey(img image.Image) *image.NRGBA {
	b := img.Bounds()
	out := image.NewNRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			// a glyph is white on a coloured shield: threshold near white
			v := uint8(0)
			if a > 0x8000 && (299*r+587*g+114*bl)/1000 > 0xd000 {
				v = 255
			}
			i := out.PixOffset(x, y)
			out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = v, v, v, uint8(a>>8)
		}
	}
	return out
}

func TestStatusIcons(t *testing.T) {
	imgs := map[Status]image.Image{}
	for _, s := range Statuses() {
		imgs[s] = decode(t, string(s), StatusIcon(s), StatusIconSize)
		if svg := StatusIconSVG(s); !isSVG(svg) {
			t.Errorf("%s: SVG source is not SVG", s)
		}
	}
	all := Statuses()
	for i, a := range all {
		for _, b := range all[i+1:] {
			if n := diff(imgs[a], imgs[b]); n < StatusIconSize*StatusIconSize/20 {
				t.Errorf("%s and %s differ in %d pixels only", a, b, n)
			}
			// Without colour, the white glyphs must still tell them apart.
			if n := diff(grey(imgs[a]), grey(imgs[b])); n < StatusIconSize*StatusIconSize/50 {
				t.Errorf("%s and %s have glyphs differing in %d pixels only: not distinguishable without colour", a, b, n)
			}
		}
	}
	if got := StatusIcon("bogus"); got != nil {
		t.Errorf("StatusIcon(bogus) = %d bytes, want nil", len(got))
	}
	if n := len(Statuses()); n != 5 {
		t.Errorf("%d statuses, want 5", n)
	}
}

// The pending icon carries a badge in its top right corner that the
// enforcing icon has not.
func TestPendingBadge(t *testing.T) {
	p := decode(t, "pending", StatusIcon(StatusPending), StatusIconSize)
	e := decode(t, "enforcing", StatusIcon(StatusEnforcing), StatusIconSize)
	corner := image.Rect(StatusIconSize*3/4, 0, StatusIconSize, StatusIconSize/4)
	opaque := func(img image.Image) int {
		n := 0
		for y := corner.Min.Y; y < corner.Max.Y; y++ {
			for x := corner.Min.X; x < corner.Max.X; x++ {
				if _, _, _, a := img.At(x, y).RGBA(); a > 0x8000 {
					n++
				}
			}
		}
		return n
	}
	if pn, en := opaque(p), opaque(e); pn < 2*en || pn < corner.Dx()*corner.Dy()/2 {
		t.Errorf("top right corner: pending %d opaque pixels, enforcing %d: no badge", pn, en)
	}
}

func TestAppIcon(t *testing.T) {
	big := decode(t, "app", AppIcon(), AppIconSize)
	small := decode(t, "app48", AppIconSmall(), AppIconSmallSize)
	_, _ = big, small
	if !isSVG(AppIconSVG()) {
		t.Error("AppIconSVG is not SVG")
	}
	for _, s := range Statuses() {
		if bytes.Equal(AppIcon(), StatusIcon(s)) {
			t.Errorf("app icon is the %s icon", s)
		}
	}
}

func isSVG(b []byte) bool {
	var root struct {
		XMLName xml.Name
		ViewBox string `xml:"viewBox,attr"`
	}
	return xml.Unmarshal(b, &root) == nil && root.XMLName.Local == "svg" &&
		root.XMLName.Space == "http://www.w3.org/2000/svg" && root.ViewBox != ""
}

// Every SVG in icons/ has its PNG render beside it, and nothing else lies there.
func TestIconFilesPaired(t *testing.T) {
	svgs, _ := filepath.Glob("icons/*.svg")
	pngs, _ := filepath.Glob("icons/*.png")
	if len(svgs) != 6 || len(pngs) != 7 {
		t.Errorf("icons/: %d SVGs %q and %d PNGs %q, want 6 and 7", len(svgs), svgs, len(pngs), pngs)
	}
	for _, p := range pngs {
		stem := strings.TrimSuffix(p, ".png")
		stem = strings.TrimSuffix(strings.TrimSuffix(stem, "-256"), "-48")
		if !slices.Contains(svgs, stem+".svg") {
			t.Errorf("%s has no SVG source", p)
		}
	}
}

func TestDesktopFilesParse(t *testing.T) {
	app, err := desktop.Parse(DesktopFile())
	if err != nil {
		t.Fatalf("parse tollgate-tray.desktop: %v", err)
	}
	argv, err := app.Argv()
	if err != nil || !slices.Equal(argv, []string{"tollgate-tray"}) {
		t.Errorf("Exec argv = %q, %v", argv, err)
	}
	if app.Type != "Application" || app.Name != "Tollgate" || app.Icon != "tollgate" || app.Comment == "" ||
		app.NoDisplay || app.Hidden || app.Terminal {
		t.Errorf("tollgate-tray.desktop = %+v", app)
	}
	// One main category (System), so menus list it once; Security is an
	// additional one (desktop-file-validate hints at two main ones).
	if want := []string{"System", "Security"}; !slices.Equal(app.Categories, want) {
		t.Errorf("Categories = %q, want %q", app.Categories, want)
	}
	if v, _ := app.Get("StartupNotify"); v != "false" {
		t.Errorf("StartupNotify = %q", v)
	}

	auto, err := desktop.Parse(AutostartFile())
	if err != nil {
		t.Fatalf("parse tollgate-tray-autostart.desktop: %v", err)
	}
	if auto.Type != "Application" || auto.Exec != app.Exec || auto.Icon != "tollgate" || !auto.NoDisplay || auto.Hidden {
		t.Errorf("tollgate-tray-autostart.desktop = %+v", auto)
	}
	if v, _ := auto.Get("X-GNOME-Autostart-enabled"); v != "true" {
		t.Errorf("X-GNOME-Autostart-enabled = %q", v)
	}
}

// The index finds the installed app by its executable, with its icon: the
// tray's own entry as a desktop would install it.
func TestDesktopFileIndexed(t *testing.T) {
	root := t.TempDir()
	write := func(rel string, data []byte, mode os.FileMode) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bin := write("bin/tollgate-tray", []byte("#!/bin/true\n"), 0o755)
	write("share/applications/tollgate-tray.desktop", DesktopFile(), 0o644)
	icon := write("share/icons/hicolor/48x48/apps/tollgate.png", AppIconSmall(), 0o644)
	ix := desktop.NewIndexOptions(desktop.Options{Dirs: []string{filepath.Join(root, "share")}, BinDirs: []string{filepath.Join(root, "bin")}})
	a, ok := ix.Lookup(bin, "")
	if !ok || a.Name != "Tollgate" || a.IconPath != icon || a.Match != desktop.MatchExe {
		t.Errorf("Lookup(tollgate-tray) = %+v, %v", a, ok)
	}
}

func TestDesktopFileValidate(t *testing.T) {
	tool, err := exec.LookPath("desktop-file-validate")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("desktop-file-validate not found (Debian: desktop-file-utils); required under CI=true")
		}
		t.Skip("desktop-file-validate not found (Debian: desktop-file-utils)")
	}
	for _, f := range []string{"tollgate-tray.desktop", "tollgate-tray-autostart.desktop"} {
		out, err := exec.Command(tool, f).CombinedOutput()
		if err != nil {
			t.Errorf("desktop-file-validate %s: %v\n%s", f, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "error:") || strings.Contains(line, "warning:") || strings.Contains(line, "hint:") {
				t.Errorf("desktop-file-validate %s: %s", f, line)
			}
		}
	}
	// The embedded bytes are the files on disk.
	for f, b := range map[string][]byte{"tollgate-tray.desktop": DesktopFile(), "tollgate-tray-autostart.desktop": AutostartFile()} {
		disk, err := os.ReadFile(f)
		if err != nil || !bytes.Equal(disk, b) {
			t.Errorf("%s: embedded bytes differ from the file (%v)", f, err)
		}
	}
}
