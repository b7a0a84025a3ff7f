package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestCompletionCoversCommands: every command, subcommand and flag is in
// every script (they are generated from the command table).
func TestCompletionCoversCommands(t *testing.T) {
	h := newHarness()
	scripts := map[string]string{}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		scripts[sh] = h.run(t, "completion", sh).want(t, ExitOK).stdout
	}
	h.run(t, "completion", "tcsh").want(t, ExitUsage)
	h.run(t, "completion").want(t, ExitUsage)
	for _, l := range leaves() {
		for sh, s := range scripts {
			for _, w := range strings.Fields(l.path) {
				if !strings.Contains(s, w) {
					t.Errorf("%s script lacks command word %q", sh, w)
				}
			}
			for _, f := range l.flags {
				want := "--" + f
				if sh == "fish" {
					want = "-l " + f
				}
				if len(f) == 1 {
					want = "-" + f
					if sh == "fish" {
						want = "-s " + f
					}
				}
				if !strings.Contains(s, want) {
					t.Errorf("%s script lacks %s of %q", sh, want, l.path)
				}
			}
		}
	}
	if !strings.Contains(scripts["zsh"], "bashcompinit") {
		t.Error("zsh script does not load bashcompinit")
	}
}

// TestBashCompletion runs the bash script's function on command lines.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	h := newHarness()
	script := filepath.Join(t.TempDir(), "tollgate.bash")
	if err := os.WriteFile(script, []byte(h.run(t, "completion", "bash").want(t, ExitOK).stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	// A stand-in tollgate on PATH answers the dynamic id lookups.
	bin := t.TempDir()
	stub := "#!/bin/sh\ncase \"$*\" in\n  'rules list -q') echo r1; echo r2; echo rules.d/a.toml:1; echo rules.d/a.toml:2 ;;\n  '--bus=unix:path=/x rules list -q') echo r9 ;;\n  'pending -q') echo 7 ;;\nesac\n"
	if err := os.WriteFile(filepath.Join(bin, "tollgate"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string // words; the last is the one completed
		want []string
	}{
		{"tollgate ", []string{"--bus", "--help", "--json", "answer", "completion", "log", "mode", "pending", "prompt", "rules", "status"}},
		{"tollgate ru", []string{"rules"}},
		{"tollgate rules ", []string{"add", "disable", "edit", "enable", "explain", "export", "import", "list", "rm", "show"}},
		{"tollgate rules rm ", []string{"r1", "r2", "rules.d/a.toml:1", "rules.d/a.toml:2"}},
		{"tollgate --bus unix:path=/x rules e", []string{"edit", "enable", "explain", "export"}},
		{"tollgate --bus unix:path=/x rules show ", []string{"r9"}},
		{"tollgate rules show --bus=unix:path=/x ", []string{"r9"}},
		{"tollgate --bus=unix:path=/x rules sh", []string{"show"}},
		{"tollgate rules show --bus unix:path=/x r", []string{"r9"}},
		{"tollgate rules show rules.d/a.toml:", []string{"1", "2"}},
		{"tollgate rules add --proto ", []string{"any", "icmp", "tcp", "udp"}},
		{"tollgate rules add --exe-", []string{"--exe-sha256"}},
		{"tollgate answer ", []string{"7"}},
		{"tollgate answer 7 ", []string{"allow", "deny", "reject"}},
		{"tollgate answer 7 deny --scope any", []string{"any-exe-host"}},
		{"tollgate mode ", []string{"disabled", "enforcing", "monitor"}},
		{"tollgate mode monitor ", nil},
		{"tollgate log --verdict d", []string{"deny"}},
		{"tollgate completion ", []string{"bash", "fish", "zsh"}},
	} {
		// As bash sets them: the line, the cursor at its end, and words
		// split at COMP_WORDBREAKS (which the script does not trust).
		prog := "source " + script + "\nCOMP_LINE='" + tc.line + "'\nCOMP_POINT=" + strconv.Itoa(len(tc.line)) +
			"\nCOMP_WORDS=(" + tc.line + ")\nCOMP_CWORD=${#COMP_WORDS[@]}\n_tollgate\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command(bash, "--noprofile", "--norc", "-c", prog)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.line, err, out)
		}
		got := strings.Fields(string(out))
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("complete %q = %v, want %v", tc.line, got, tc.want)
		}
	}
}
