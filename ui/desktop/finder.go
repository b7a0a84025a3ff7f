package desktop

// Finder finds the application behind an executable path and app id
// ("flatpak:<id>", "snap:<name>" or ""). *Index is one; the tray's windows
// take a Finder so tests can give them a fake.
type Finder interface {
	Lookup(exe, app string) (App, bool)
}

// NameOf returns the name f knows for the application of exe and app; ok
// is false when f is nil or knows no name for it.
func NameOf(f Finder, exe, app string) (name string, ok bool) {
	if f == nil {
		return "", false
	}
	a, found := f.Lookup(exe, app)
	if !found || a.Name == "" {
		return "", false
	}
	return a.Name, true
}
