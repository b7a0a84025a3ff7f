package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Completion scripts are generated from the command table, so they cannot
// drift from the commands and flags that exist.

// Dynamic values: rule ids and pending ids come from the daemon at
// completion time (errors are silenced: no daemon, no candidates).
const (
	dynRuleIDs    = "$(tollgate $bus rules list -q 2>/dev/null)"
	dynPendingIDs = "$(tollgate $bus pending -q 2>/dev/null)"
)

// flagValues are the values a flag takes, for completion.
var flagValues = map[string][]string{
	"action":    {"allow", "deny", "reject"},
	"verdict":   {"allow", "deny", "reject"},
	"lifetime":  {"once", "session", "process", "until", "forever"},
	"scope":     {"exe-host-port", "exe-host", "exe-any", "any-exe-host"},
	"proto":     {"tcp", "udp", "icmp", "any"},
	"direction": {"out", "in"},
	"owner":     {"system"},
}

// leaf is a runnable command as completion sees it.
type leaf struct {
	path      string   // "rules add"
	flags     []string // long flag names (no aliases)
	valueFlag []string // flags that take a value
	args      []string // candidate words for positional arguments (first position)
	args2     []string // candidates for the second position
	files     bool     // positional arguments are files
}

func leaves() []leaf {
	var out []leaf
	var walk func(prefix string, cmds []*command)
	walk = func(prefix string, cmds []*command) {
		for _, c := range cmds {
			path := strings.TrimSpace(prefix + " " + c.name)
			if len(c.subs) > 0 {
				walk(path, c.subs)
				continue
			}
			l := leaf{path: path}
			fs := flag.NewFlagSet("", flag.ContinueOnError)
			fs.Bool("json", false, "")
			fs.String("bus", "", "")
			c.setup(fs)
			fs.VisitAll(func(f *flag.Flag) {
				if strings.Contains(f.Name, "_") || len(f.Name) == 1 && f.Name != "q" {
					return
				}
				l.flags = append(l.flags, f.Name)
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
					l.valueFlag = append(l.valueFlag, f.Name)
				}
			})
			switch path {
			case "mode":
				l.args = modes
			case "rules show", "rules edit", "rules rm", "rules enable", "rules disable":
				l.args = []string{dynRuleIDs}
			case "rules export", "rules import":
				l.files = true
			case "answer":
				l.args = []string{dynPendingIDs}
				l.args2 = []string{"allow", "deny", "reject"}
			case "completion":
				l.args = []string{"bash", "zsh", "fish"}
			}
			out = append(out, l)
		}
	}
	walk("", commands())
	return out
}

func setupCompletion(fs *flag.FlagSet) action {
	return func(ctx context.Context, inv *invocation) error {
		w := inv.app.Stdout
		switch inv.args[0] {
		case "bash":
			return writeBash(w, false)
		case "zsh":
			return writeBash(w, true)
		case "fish":
			return writeFish(w)
		}
		return usagef("no completion for shell %q (want bash, zsh or fish)", inv.args[0])
	}
}

func dashed(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "--" + n
		if len(n) == 1 {
			out[i] = "-" + n
		}
	}
	return strings.Join(out, " ")
}

// writeBash writes the bash script; zsh runs the same through bashcompinit.
func writeBash(w io.Writer, zsh bool) error {
	var b strings.Builder
	if zsh {
		b.WriteString("#compdef tollgate\n# zsh completion for tollgate: eval \"$(tollgate completion zsh)\"\nautoload -U +X bashcompinit && bashcompinit\n")
	} else {
		b.WriteString("# bash completion for tollgate: source <(tollgate completion bash)\n")
	}
	ls := leaves()
	var top []string
	groups := map[string][]string{}
	var valueFlags []string
	for _, l := range ls {
		words := strings.Fields(l.path)
		if !slices.Contains(top, words[0]) {
			top = append(top, words[0])
		}
		if len(words) == 2 {
			groups[words[0]] = append(groups[words[0]], words[1])
		}
		for _, f := range l.valueFlag {
			if !slices.Contains(valueFlags, f) {
				valueFlags = append(valueFlags, f)
			}
		}
	}
	fmt.Fprintf(&b, `_tollgate() {
    local cur prev i w path="" npos=0 bus="" words n
    # Words from the line itself: COMP_WORDS splits at = and :, which
    # bus addresses and some ids contain.
    local line="${COMP_LINE:0:COMP_POINT}"
    read -ra words <<< "$line"
    [[ -z "$line" || "$line" == *[[:space:]] ]] && words+=("")
    n=$(( ${#words[@]} - 1 ))
    cur="${words[n]}"
    prev=""
    ((n > 0)) && prev="${words[n-1]}"
    local valueflags=" %s "
    for ((i=1; i<n; i++)); do
        w="${words[i]}"
        case "$w" in
            --bus=*) bus="$w" ;;
            --bus) bus="--bus=${words[i+1]}" ;;
            -*) ;;
            *)
                if [[ "$valueflags" == *" ${words[i-1]} "* && "${words[i-1]}" == -* ]]; then continue; fi
                case "$path" in
`, dashed(valueFlags))
	for _, g := range sortedGroups(groups) {
		fmt.Fprintf(&b, "                    %s) if [[ \" %s \" == *\" $w \"* ]]; then path=\"%s $w\"; else npos=$((npos+1)); fi ;;\n",
			g.name, strings.Join(g.subs, " "), g.name)
	}
	fmt.Fprintf(&b, `                    "") path="$w" ;;
                    *) npos=$((npos+1)) ;;
                esac ;;
        esac
    done
    case "$prev" in
`)
	for _, k := range sortedKeys(flagValues) {
		fmt.Fprintf(&b, "        --%s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return ;;\n", k, strings.Join(flagValues[k], " "))
	}
	fmt.Fprintf(&b, "        --bus) return ;;\n")
	fmt.Fprintf(&b, "    esac\n    case \"$path\" in\n")
	fmt.Fprintf(&b, "        \"\") COMPREPLY=($(compgen -W \"%s --json --bus --help\" -- \"$cur\")) ;;\n", strings.Join(top, " "))
	for _, g := range sortedGroups(groups) {
		fmt.Fprintf(&b, "        %s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")) ;;\n", g.name, strings.Join(g.subs, " "))
	}
	for _, l := range ls {
		fmt.Fprintf(&b, "        %q)\n", l.path)
		fmt.Fprintf(&b, "            if [[ \"$cur\" == -* ]]; then COMPREPLY=($(compgen -W \"%s --help\" -- \"$cur\")); return; fi\n", dashed(l.flags))
		switch {
		case l.files:
			b.WriteString("            COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n")
		case len(l.args) > 0 && len(l.args2) > 0:
			fmt.Fprintf(&b, "            if ((npos == 0)); then COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); elif ((npos == 1)); then COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); fi ;;\n",
				strings.Join(l.args, " "), strings.Join(l.args2, " "))
		case len(l.args) > 0:
			fmt.Fprintf(&b, "            if ((npos == 0)); then COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); fi ;;\n", strings.Join(l.args, " "))
		default:
			b.WriteString("            ;;\n")
		}
	}
	b.WriteString(`    esac
    # bash replaces only the part of the word after its last colon.
    if [[ "$cur" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
        local prefix="${cur%"${cur##*:}"}"
        for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]="${COMPREPLY[i]#"$prefix"}"; done
    fi
}
complete -F _tollgate tollgate
`)
	_, err := io.WriteString(w, b.String())
	return err
}

type group struct {
	name string
	subs []string
}

func sortedGroups(m map[string][]string) []group {
	var out []group
	for _, k := range sortedKeys(m) {
		out = append(out, group{k, m[k]})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func writeFish(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# fish completion for tollgate: tollgate completion fish | source\n")
	b.WriteString("complete -c tollgate -f\n")
	b.WriteString("complete -c tollgate -l json -d 'JSON output'\ncomplete -c tollgate -l bus -r -d 'D-Bus address'\n")
	ls := leaves()
	var top []string
	groups := map[string][]string{}
	for _, l := range ls {
		words := strings.Fields(l.path)
		if !slices.Contains(top, words[0]) {
			top = append(top, words[0])
		}
		if len(words) == 2 {
			groups[words[0]] = append(groups[words[0]], words[1])
		}
	}
	fmt.Fprintf(&b, "complete -c tollgate -n '__fish_use_subcommand' -a '%s'\n", strings.Join(top, " "))
	for _, g := range sortedGroups(groups) {
		fmt.Fprintf(&b, "complete -c tollgate -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a '%s'\n",
			g.name, strings.Join(g.subs, " "), strings.Join(g.subs, " "))
	}
	for _, l := range ls {
		words := strings.Fields(l.path)
		cond := "__fish_seen_subcommand_from " + words[0]
		if len(words) == 2 {
			cond += "; and __fish_seen_subcommand_from " + words[1]
		}
		for _, f := range l.flags {
			if f == "json" || f == "bus" {
				continue
			}
			line := fmt.Sprintf("complete -c tollgate -n '%s' -l %s", cond, f)
			if len(f) == 1 {
				line = fmt.Sprintf("complete -c tollgate -n '%s' -s %s", cond, f)
			}
			if vals, ok := flagValues[f]; ok {
				line += fmt.Sprintf(" -x -a '%s'", strings.Join(vals, " "))
			} else if slices.Contains(l.valueFlag, f) {
				line += " -r"
			}
			b.WriteString(line + "\n")
		}
		args := l.args
		if l.files {
			fmt.Fprintf(&b, "complete -c tollgate -n '%s' -F\n", cond)
		}
		if len(args) > 0 {
			a := strings.Join(args, " ")
			a = strings.ReplaceAll(strings.ReplaceAll(a, "$(", "("), " $bus", "")
			fmt.Fprintf(&b, "complete -c tollgate -n '%s' -a '%s'\n", cond, a)
		}
		if len(l.args2) > 0 {
			fmt.Fprintf(&b, "complete -c tollgate -n '%s' -a '%s'\n", cond, strings.Join(l.args2, " "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
