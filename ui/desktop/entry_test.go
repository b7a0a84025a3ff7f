package desktop

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const firefox = `# a comment
[Desktop Entry]
Version=1.0
Type=Application
Name=Firefox
Name[de]=Firefox-Browser
Name[de_CH]=Firefox (Schweiz)
Name[sr@latin]=Fajerfoks
Comment = Browse the World Wide Web
Comment[de]=Im Internet surfen
GenericName=Web Browser
Exec=/usr/lib/firefox/firefox %u
TryExec=firefox
Icon=firefox
Terminal=false
Categories=Network;WebBrowser;
StartupWMClass=firefox
X-Custom=a\sb\\c

[Desktop Action new-window]
Name=New Window
Exec=/usr/lib/firefox/firefox --new-window %u
`

func TestParse(t *testing.T) {
	e, err := Parse([]byte(firefox))
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != "Application" || e.Name != "Firefox" || e.Comment != "Browse the World Wide Web" ||
		e.GenericName != "Web Browser" || e.Icon != "firefox" || e.TryExec != "firefox" ||
		e.StartupWMClass != "firefox" || e.Terminal || e.NoDisplay || e.Hidden {
		t.Errorf("entry = %+v", e)
	}
	if e.Exec != "/usr/lib/firefox/firefox %u" {
		t.Errorf("Exec = %q (the action's Exec must not leak into the entry)", e.Exec)
	}
	if want := []string{"Network", "WebBrowser"}; !reflect.DeepEqual(e.Categories, want) {
		t.Errorf("Categories = %q, want %q", e.Categories, want)
	}
	if v, ok := e.Get("X-Custom"); !ok || v != `a b\c` {
		t.Errorf("X-Custom = %q %v, want unescaped", v, ok)
	}
	if _, ok := e.Get("Missing"); ok {
		t.Error("Get of a missing key is ok")
	}
	argv, err := e.Argv()
	if err != nil || !reflect.DeepEqual(argv, []string{"/usr/lib/firefox/firefox"}) {
		t.Errorf("Argv = %q, %v", argv, err)
	}
}

func TestLocalized(t *testing.T) {
	e, err := Parse([]byte(firefox))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ locale, name, comment string }{
		{"", "Firefox", "Browse the World Wide Web"},
		{"C", "Firefox", "Browse the World Wide Web"},
		{"de_DE.UTF-8", "Firefox-Browser", "Im Internet surfen"},
		{"de_CH.UTF-8", "Firefox (Schweiz)", "Im Internet surfen"},
		{"de_CH@euro", "Firefox (Schweiz)", "Im Internet surfen"},
		{"sr_RS@latin", "Fajerfoks", "Browse the World Wide Web"},
		{"sr_RS", "Firefox", "Browse the World Wide Web"},
		{"fr_FR.UTF-8", "Firefox", "Browse the World Wide Web"},
	} {
		if got := e.LocalizedName(tc.locale); got != tc.name {
			t.Errorf("LocalizedName(%q) = %q, want %q", tc.locale, got, tc.name)
		}
		if got := e.LocalizedComment(tc.locale); got != tc.comment {
			t.Errorf("LocalizedComment(%q) = %q, want %q", tc.locale, got, tc.comment)
		}
	}
	if got := e.LocalizedGenericName("de"); got != "Web Browser" {
		t.Errorf("LocalizedGenericName = %q", got)
	}
}

func TestParseFlags(t *testing.T) {
	e, err := Parse([]byte("\xef\xbb\xbf[Desktop Entry]\r\nType=Application\r\nName=X\r\nNoDisplay=true\r\nHidden=1\r\nTerminal=yes\r\nDBusActivatable=true\r\nCategories=A\\;B;C\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !e.NoDisplay || !e.Hidden || e.Terminal || !e.DBusActivatable {
		t.Errorf("flags = NoDisplay %v Hidden %v Terminal %v DBus %v", e.NoDisplay, e.Hidden, e.Terminal, e.DBusActivatable)
	}
	if want := []string{"A;B", "C"}; !reflect.DeepEqual(e.Categories, want) {
		t.Errorf("Categories = %q, want %q", e.Categories, want)
	}
}

func TestParseFirstValueWins(t *testing.T) {
	e, err := Parse([]byte("[Desktop Entry]\nType=Application\nName=First\nName=Second\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "First" {
		t.Errorf("Name = %q, want the first value", e.Name)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrNoEntry},
		{"only comments", "# hi\n\n", ErrNoEntry},
		{"other group only", "[Desktop Action x]\nName=a\n", ErrNoEntry},
		{"key before group", "Name=a\n[Desktop Entry]\nType=Application\n", ErrSyntax},
		{"garbage line", "[Desktop Entry]\nType=Application\nName=a\njust words\n", ErrSyntax},
		{"unterminated group", "[Desktop Entry\nType=Application\n", ErrSyntax},
		{"empty group", "[]\n", ErrSyntax},
		{"control char in group", "[Desk\x01]\n", ErrSyntax},
		{"duplicate group", "[Desktop Entry]\nType=Application\nName=a\n[Desktop Entry]\n", ErrSyntax},
		{"bad key", "[Desktop Entry]\nType=Application\nNa me=a\n", ErrSyntax},
		{"empty key", "[Desktop Entry]\n=a\n", ErrSyntax},
		{"bad locale", "[Desktop Entry]\nName[d e]=a\n", ErrSyntax},
		{"empty locale", "[Desktop Entry]\nName[]=a\n", ErrSyntax},
		{"unclosed locale", "[Desktop Entry]\nName[de=a\n", ErrSyntax},
		{"not utf-8", "[Desktop Entry]\nType=Application\nName=\xff\n", ErrSyntax},
		{"no type", "[Desktop Entry]\nName=a\n", ErrInvalid},
		{"no name", "[Desktop Entry]\nType=Application\n", ErrInvalid},
		{"too many lines", "[Desktop Entry]\nType=Application\nName=a\n" + strings.Repeat("#\n", MaxLines), ErrTooLarge},
		{"too large", "[Desktop Entry]\nType=Application\nName=" + strings.Repeat("a", MaxFileSize) + "\n", ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse([]byte(tc.in))
			if !errors.Is(err, tc.want) {
				t.Errorf("Parse = %+v, %v; want %v", e, err, tc.want)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		``:           ``,
		`plain`:      `plain`,
		`a\sb`:       `a b`,
		`a\nb\tc\rd`: "a\nb\tc\rd",
		`a\\b`:       `a\b`,
		`a\qb`:       `a\qb`,
		`trailing\`:  `trailing\`,
		`\\\\`:       `\\`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseExec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"firefox", []string{"firefox"}},
		{"firefox %u", []string{"firefox"}},
		{"  /usr/bin/gimp-2.10   %U  ", []string{"/usr/bin/gimp-2.10"}},
		{"app --file=%f --x", []string{"app", "--file=", "--x"}},
		{"app %F %i %c %k %d %D %n %N %v %m", []string{"app"}},
		{"app 100%%", []string{"app", "100%"}},
		{"app %", []string{"app", "%"}},
		{"app %z", []string{"app", "%z"}},
		{`"/opt/My App/bin/app" --flag`, []string{"/opt/My App/bin/app", "--flag"}},
		{"sh -c \"echo \\\"hi\\\" \\$HOME \\\\ \\`\"", []string{"sh", "-c", "echo \"hi\" $HOME \\ `"}},
		{`app ""`, []string{"app", ""}},
		{`app "a"b`, []string{"app", "ab"}},
		{`app 'single quoted'`, []string{"app", "single quoted"}},
		{`app a\ b`, []string{"app", "a b"}},
		{"env FOO=bar /usr/bin/app %U", []string{"env", "FOO=bar", "/usr/bin/app"}},
	} {
		got, err := ParseExec(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseExec(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{`app "unterminated`, `app 'x`, `app \`, `"\"`} {
		if got, err := ParseExec(in); !errors.Is(err, ErrExecSyntax) {
			t.Errorf("ParseExec(%q) = %q, %v; want ErrExecSyntax", in, got, err)
		}
	}
}

// The Exec value is string-unescaped first, then split: "\\\\" in the file is
// one backslash escaping the next inside quotes.
func TestExecEscapeLayers(t *testing.T) {
	e, err := Parse([]byte("[Desktop Entry]\nType=Application\nName=a\nExec=\"/opt/a b/run\" \"x\\\\\\\\y\" \\s%f\n"))
	if err != nil {
		t.Fatal(err)
	}
	argv, err := e.Argv()
	if want := []string{"/opt/a b/run", `x\y`}; err != nil || !reflect.DeepEqual(argv, want) {
		t.Errorf("Argv = %q, %v; want %q", argv, err, want)
	}
}

func TestLocaleKeys(t *testing.T) {
	for in, want := range map[string][]string{
		"":                  nil,
		"C":                 nil,
		"POSIX":             nil,
		"de":                {"de"},
		"de_DE":             {"de_DE", "de"},
		"de_DE.UTF-8":       {"de_DE", "de"},
		"sr_RS.UTF-8@latin": {"sr_RS@latin", "sr_RS", "sr@latin", "sr"},
		"sr@latin":          {"sr@latin", "sr"},
		"_DE":               nil,
	} {
		if got := localeKeys(in); !reflect.DeepEqual(got, want) {
			t.Errorf("localeKeys(%q) = %q, want %q", in, got, want)
		}
	}
}
