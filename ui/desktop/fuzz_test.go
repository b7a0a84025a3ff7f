package desktop

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(firefox))
	f.Add([]byte("[Desktop Entry]\nType=Application\nName=a\nExec=\"x y\" %U\n"))
	f.Add([]byte("\xef\xbb\xbf[Desktop Entry]\r\nName[de_DE@euro]=b\r\nCategories=a\\;b;c;\r\n"))
	f.Add([]byte("[Desktop Entry]\nType=Application\nName=\\\nExec=sh -c 'a \\\"b' %%\n[X]\nA=b\n"))
	f.Add([]byte("[\n=\n[]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data)
		if err != nil {
			if e != nil {
				t.Fatalf("Parse returned an entry with error %v", err)
			}
			return
		}
		if e.Type == "" || e.Name == "" {
			t.Fatalf("Parse accepted an entry without Type or Name: %+v", e)
		}
		if !utf8.ValidString(e.Name) || !utf8.ValidString(e.Exec) {
			t.Fatal("Parse returned invalid UTF-8")
		}
		for _, loc := range []string{"de_DE.UTF-8@euro", "C", ""} {
			_ = e.LocalizedName(loc)
			_ = e.LocalizedComment(loc)
		}
		argv, err := e.Argv()
		if err == nil {
			for _, a := range argv {
				if len(a) > len(e.Exec) {
					t.Fatalf("argument %q longer than Exec %q", a, e.Exec)
				}
			}
		}
	})
}

func FuzzParseExec(f *testing.F) {
	for _, s := range []string{"firefox %u", `"a b" 'c d' e\ f %% %`, `sh -c "echo \"\$x\""`, `"unterminated`, `env A=b app %F`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		argv, err := ParseExec(s)
		if err != nil {
			return
		}
		total := 0
		for _, a := range argv {
			total += len(a)
		}
		if total > len(s) {
			t.Fatalf("arguments %q longer than input %q", argv, s)
		}
		// Quoting the arguments back gives a line that splits into the same arguments.
		again, err := ParseExec(quoteExec(argv))
		if err != nil || !slices.Equal(again, argv) && !(len(again) == 0 && len(argv) == 0) {
			t.Fatalf("round trip of %q: %q (%q), %v", s, again, quoteExec(argv), err)
		}
		_, _ = program(argv)
	})
}

// quoteExec writes argv as an Exec value per the spec: every argument double
// quoted, with \" \` \$ \\ escaped (ParseExec reads % literally inside quotes).
func quoteExec(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		for j := 0; j < len(a); j++ {
			switch c := a[j]; c {
			case '"', '`', '$', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}
