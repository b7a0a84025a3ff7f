package desktop

import "testing"

type fakeFinder map[string]App

func (f fakeFinder) Lookup(exe, app string) (App, bool) {
	a, ok := f[exe+"|"+app]
	return a, ok
}

func TestNameOf(t *testing.T) {
	f := fakeFinder{
		"/usr/bin/firefox|":      {Name: "Firefox"},
		"/usr/bin/noname|":       {ID: "noname.desktop"},
		"/app/bin/x|flatpak:x.y": {Name: "X"},
	}
	for _, c := range []struct {
		f         Finder
		exe, app  string
		want      string
		wantFound bool
	}{
		{f, "/usr/bin/firefox", "", "Firefox", true},
		{f, "/usr/bin/noname", "", "", false}, // an entry without a name names nothing
		{f, "/app/bin/x", "flatpak:x.y", "X", true},
		{f, "/usr/bin/other", "", "", false},
		{nil, "/usr/bin/firefox", "", "", false},
	} {
		if got, ok := NameOf(c.f, c.exe, c.app); got != c.want || ok != c.wantFound {
			t.Errorf("NameOf(%q, %q) = %q %v, want %q %v", c.exe, c.app, got, ok, c.want, c.wantFound)
		}
	}
}
