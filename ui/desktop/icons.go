package desktop

import (
	"os"
	"path/filepath"
	"strings"
)

// iconSizes is the order PNG sizes of the hicolor theme are tried in: the
// sizes a tray prompt shows best (48–64 px) first, then scalable SVG (see
// iconFor), then the nearest others, larger before smaller.
var (
	preferredPNG = []string{"48x48", "64x64", "56x56", "72x72"}
	fallbackPNG  = []string{"96x96", "128x128", "256x256", "32x32", "512x512", "24x24", "22x22", "16x16"}
)

// icon resolves an Icon value to a file, caching the answer (also "none")
// for the life of the snapshot.
func (s *snapshot) icon(name string) string {
	if name == "" {
		return ""
	}
	if v, ok := s.icons.Load(name); ok {
		return v.(string)
	}
	p := resolveIcon(s.dataDirs, name)
	s.icons.Store(name, p)
	return p
}

// resolveIcon finds the file of an Icon value: an absolute path to a PNG or
// SVG that exists, or a name looked up in each data dir's hicolor theme
// (apps context: 48–64 px PNG, then scalable SVG, then other PNG sizes) and
// then in each data dir's pixmaps (PNG, then SVG). Other formats (XPM) are not
// returned: the UI could not draw them.
func resolveIcon(dataDirs []string, name string) string {
	if filepath.IsAbs(name) {
		if isIconFile(name) && isRegular(name) {
			return filepath.Clean(name)
		}
		return ""
	}
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return "" // not a name; never walk out of the theme dirs
	}
	// Icon=foo.png is deprecated but common: look the stem up.
	if ext := filepath.Ext(name); ext == ".png" || ext == ".svg" || ext == ".xpm" {
		name = strings.TrimSuffix(name, ext)
	}
	if name == "" {
		return ""
	}
	try := func(p string) bool { return isRegular(p) }
	for _, d := range dataDirs {
		for _, size := range preferredPNG {
			if p := filepath.Join(d, "icons", "hicolor", size, "apps", name+".png"); try(p) {
				return p
			}
		}
	}
	for _, d := range dataDirs {
		if p := filepath.Join(d, "icons", "hicolor", "scalable", "apps", name+".svg"); try(p) {
			return p
		}
	}
	for _, d := range dataDirs {
		for _, size := range fallbackPNG {
			if p := filepath.Join(d, "icons", "hicolor", size, "apps", name+".png"); try(p) {
				return p
			}
		}
	}
	for _, d := range dataDirs {
		for _, ext := range []string{".png", ".svg"} {
			if p := filepath.Join(d, "pixmaps", name+ext); try(p) {
				return p
			}
		}
	}
	return ""
}

func isIconFile(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return ext == ".png" || ext == ".svg"
}

func isRegular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
