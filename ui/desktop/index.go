package desktop

import (
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MatchKind says how Lookup found an application. Callers that show the
// result in a security decision should treat MatchBasename as a hint only:
// any program can be called "firefox".
type MatchKind string

const (
	MatchExe      MatchKind = "exe"      // the executable path is the entry's Exec/TryExec program (or its symlink target)
	MatchFlatpak  MatchKind = "flatpak"  // the Flatpak app id names the entry
	MatchSnap     MatchKind = "snap"     // the snap name names the entry
	MatchBasename MatchKind = "basename" // only the file name of the executable matches: weaker
)

// App is what the tray shows of an application.
type App struct {
	ID       string // desktop file id, e.g. "org.gnome.Nautilus.desktop"
	Name     string // Name, localized for the index's locale
	Comment  string // Comment, localized
	Exec     string // the Exec value with field codes removed, arguments joined by spaces (for display)
	IconName string // the Icon value as written
	IconPath string // a resolved PNG or SVG file, or ""
	File     string // the .desktop file the entry came from

	Executable string    // the absolute path the Exec program resolves to, or ""
	Match      MatchKind // how Lookup found it
}

// Limits of one index scan.
const (
	maxFilesPerScan = 20000
	maxScanDepth    = 8
)

// DefaultCheckInterval is how often, at most, Lookup looks whether a
// directory changed.
const DefaultCheckInterval = 5 * time.Second

// StandardBinDirs are where a bare Exec command name is looked for, in order
// (a PATH-like list; the user's own PATH is not trusted for this).
var StandardBinDirs = []string{"/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin"}

// Options configure an Index. Zero values take the defaults.
type Options struct {
	Dirs          []string      // XDG data dirs, highest precedence first (default DefaultDirs())
	BinDirs       []string      // where bare command names are resolved (default StandardBinDirs)
	Locale        string        // POSIX locale for Name/Comment (default from LC_ALL, LC_MESSAGES, LANG)
	CheckInterval time.Duration // default DefaultCheckInterval
	Log           *slog.Logger  // default: discard
}

// Index maps executables, Flatpak app ids and snap names to desktop entries.
// It is safe for concurrent use. It scans on the first Lookup and rescans
// when the mtime of a scanned directory changes (looked at no more often than
// CheckInterval; the looking is done by one caller while the others keep
// answering from the previous scan).
//
// Lookup order:
//  1. app "flatpak:<id>": the entry with desktop file id <id>.desktop, else the
//     one whose X-Flatpak key is <id>;
//  2. app "snap:<name>": <name>_<name>.desktop in a snapd desktop dir, else
//     another <name>_*.desktop there, else the one whose X-SnapInstanceName is <name>;
//  3. the executable path: entries whose Exec program (after "env VAR=…"),
//     resolved to an absolute path through BinDirs when bare, or whose
//     absolute TryExec, or the symlink target of either, is that path;
//  4. only when app is "": the file name of the executable against the file
//     names of those programs (MatchBasename, a weaker fallback).
//
// Entries earlier in Dirs shadow entries with the same id later; Hidden
// entries shadow and are not indexed; entries whose TryExec is not an
// executable file are skipped; when several entries map to the same key,
// one without NoDisplay wins, then the earlier dir, then the smaller id.
// Generic launchers and interpreters (env, sh, python3, flatpak, snap, …)
// given arguments are not keys: a python script's entry must not name every
// python process (see exeKeys).
type Index struct {
	dirs     []string
	binDirs  []string
	locale   string
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time // for tests

	mu   sync.Mutex // held while scanning
	snap atomic.Pointer[snapshot]
}

// NewIndex returns an index over the given XDG data dirs (each holding an
// applications/ dir and icons/), highest precedence first.
func NewIndex(dirs []string) *Index {
	return NewIndexOptions(Options{Dirs: dirs})
}

// NewIndexOptions is NewIndex with options.
func NewIndexOptions(o Options) *Index {
	ix := &Index{
		dirs:     o.Dirs,
		binDirs:  o.BinDirs,
		locale:   o.Locale,
		interval: o.CheckInterval,
		log:      o.Log,
		now:      time.Now,
	}
	if ix.dirs == nil {
		ix.dirs = DefaultDirs()
	}
	if ix.binDirs == nil {
		ix.binDirs = StandardBinDirs
	}
	if ix.locale == "" {
		ix.locale = envLocale()
	}
	if ix.interval <= 0 {
		ix.interval = DefaultCheckInterval
	}
	if ix.log == nil {
		ix.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return ix
}

func envLocale() string {
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// DefaultDirs returns the XDG data dirs: $XDG_DATA_HOME (default
// ~/.local/share), then $XDG_DATA_DIRS (default /usr/local/share:/usr/share),
// then the Flatpak export dirs (user, system) and snapd's desktop dir, without
// duplicates or relative paths.
func DefaultDirs() []string {
	home, _ := os.UserHomeDir()
	var dirs []string
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		dirs = append(dirs, d)
	} else if home != "" {
		dirs = append(dirs, filepath.Join(home, ".local", "share"))
	}
	dataDirs := os.Getenv("XDG_DATA_DIRS")
	if dataDirs == "" {
		dataDirs = "/usr/local/share:/usr/share"
	}
	dirs = append(dirs, filepath.SplitList(dataDirs)...)
	if home != "" {
		dirs = append(dirs, filepath.Join(home, ".local", "share", "flatpak", "exports", "share"))
	}
	dirs = append(dirs, "/var/lib/flatpak/exports/share", "/var/lib/snapd/desktop")
	seen := map[string]bool{}
	out := dirs[:0]
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			continue
		}
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// Lookup finds the application of a connection: exe is its executable path,
// app is "flatpak:<id>", "snap:<name>" or "" (see Index for the order).
func (ix *Index) Lookup(exe, app string) (App, bool) {
	s := ix.current()
	e, kind := s.find(exe, app)
	if e == nil {
		return App{}, false
	}
	a := e.app
	a.IconPath = s.icon(a.IconName)
	a.Match = kind
	return a, true
}

// Reload scans the directories again now. Calling it in a goroutine at start
// takes the first scan (a few milliseconds for a few hundred entries) off the
// path of the first Lookup.
func (ix *Index) Reload() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.snap.Store(ix.scan())
}

// current returns the snapshot to answer from, scanning first if there is
// none and rescanning if a directory changed.
func (ix *Index) current() *snapshot {
	s := ix.snap.Load()
	if s == nil {
		ix.mu.Lock()
		defer ix.mu.Unlock()
		if s = ix.snap.Load(); s == nil {
			s = ix.scan()
			ix.snap.Store(s)
		}
		return s
	}
	now := ix.now()
	if now.UnixNano()-s.checked.Load() < int64(ix.interval) {
		return s
	}
	if !ix.mu.TryLock() {
		return s // another caller is checking; answer from what we have
	}
	defer ix.mu.Unlock()
	if cur := ix.snap.Load(); cur != s {
		return cur
	}
	s.checked.Store(now.UnixNano())
	if !s.changed() {
		return s
	}
	ix.log.Debug("desktop entries changed, rescanning")
	s = ix.scan()
	ix.snap.Store(s)
	return s
}

// stamp is the mtime of a scanned directory (or its absence).
type stamp struct {
	path   string
	exists bool
	mtime  time.Time
}

type entry struct {
	app       App
	order     int // precedence: dir index * big + position
	noDisplay bool
}

type snapshot struct {
	byID      map[string]*entry
	byExe     map[string]*entry
	byBase    map[string]*entry
	byFlatpak map[string]*entry
	bySnap    map[string]*entry
	stamps    []stamp
	checked   atomic.Int64 // unix nanos of the last change check
	dataDirs  []string
	icons     sync.Map // icon name → resolved path ("" when none)
}

func (s *snapshot) changed() bool {
	for _, st := range s.stamps {
		fi, err := os.Stat(st.path)
		exists := err == nil && fi.IsDir()
		if exists != st.exists {
			return true
		}
		if exists && !fi.ModTime().Equal(st.mtime) {
			return true
		}
	}
	return false
}

func (s *snapshot) find(exe, app string) (*entry, MatchKind) {
	if id, ok := strings.CutPrefix(app, "flatpak:"); ok && id != "" {
		if e := s.byID[id+".desktop"]; e != nil {
			return e, MatchFlatpak
		}
		if e := s.byFlatpak[id]; e != nil {
			return e, MatchFlatpak
		}
	}
	if name, ok := strings.CutPrefix(app, "snap:"); ok && name != "" {
		if e := s.bySnap[name]; e != nil {
			return e, MatchSnap
		}
	}
	if exe == "" {
		return nil, ""
	}
	if e := s.byExe[exe]; e != nil {
		return e, MatchExe
	}
	if c := filepath.Clean(exe); c != exe {
		if e := s.byExe[c]; e != nil {
			return e, MatchExe
		}
	}
	if app == "" {
		if e := s.byBase[filepath.Base(exe)]; e != nil {
			return e, MatchBasename
		}
	}
	return nil, ""
}

// scan reads every applications dir. Callers hold ix.mu.
func (ix *Index) scan() *snapshot {
	s := &snapshot{
		byID:      map[string]*entry{},
		byExe:     map[string]*entry{},
		byBase:    map[string]*entry{},
		byFlatpak: map[string]*entry{},
		bySnap:    map[string]*entry{},
		dataDirs:  ix.dirs,
	}
	s.checked.Store(ix.now().UnixNano())
	seen := map[string]bool{} // ids, shadowing later dirs
	var entries []*entry
	files := 0
	type snapCand struct {
		name string
		e    *entry
	}
	var snaps []snapCand
	for di, dir := range ix.dirs {
		root := filepath.Join(dir, "applications")
		fi, err := os.Stat(root)
		if err != nil || !fi.IsDir() {
			s.stamps = append(s.stamps, stamp{path: root})
			continue
		}
		snapDir := strings.HasSuffix(filepath.Clean(dir), filepath.Join("snapd", "desktop"))
		pos := 0
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				ix.log.Debug("read applications dir", "path", path, "err", err)
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			if d.IsDir() {
				if rel != "." && strings.Count(rel, string(filepath.Separator)) >= maxScanDepth {
					return fs.SkipDir
				}
				if info, err := d.Info(); err == nil {
					s.stamps = append(s.stamps, stamp{path: path, exists: true, mtime: info.ModTime()})
				}
				return nil
			}
			if !strings.HasSuffix(d.Name(), ".desktop") {
				return nil
			}
			if files >= maxFilesPerScan {
				return fs.SkipAll
			}
			files++
			id := strings.ReplaceAll(filepath.ToSlash(rel), "/", "-")
			if seen[id] {
				return nil
			}
			seen[id] = true
			ent, err := readEntry(path)
			if err != nil {
				ix.log.Debug("skip desktop entry", "path", path, "err", err)
				return nil
			}
			if ent.Hidden || ent.Type != "Application" {
				return nil
			}
			if ent.TryExec != "" && ix.resolve(ent.TryExec) == "" {
				return nil // not installed
			}
			e := &entry{
				app: App{
					ID:       id,
					Name:     ent.LocalizedName(ix.locale),
					Comment:  ent.LocalizedComment(ix.locale),
					IconName: ent.Icon,
					File:     path,
				},
				order:     di<<32 | pos,
				noDisplay: ent.NoDisplay,
			}
			pos++
			argv, err := ent.Argv()
			if err != nil {
				ix.log.Debug("desktop entry Exec", "path", path, "err", err)
			}
			e.app.Exec = strings.Join(argv, " ")
			prog, rest := program(argv)
			keys, bases := ix.exeKeys(prog, rest, ent.TryExec)
			if len(keys) > 0 {
				e.app.Executable = keys[0]
			}
			entries = append(entries, e)
			s.byID[id] = e
			for _, k := range keys {
				putBetter(s.byExe, k, e)
			}
			for _, b := range bases {
				putBetter(s.byBase, b, e)
			}
			if v, ok := ent.Get("X-Flatpak"); ok && v != "" {
				putBetter(s.byFlatpak, v, e)
			}
			if v, ok := ent.Get("X-SnapInstanceName"); ok && v != "" {
				snaps = append(snaps, snapCand{v, e})
			} else if snapDir {
				if name, _, ok := strings.Cut(strings.TrimSuffix(id, ".desktop"), "_"); ok && name != "" {
					snaps = append(snaps, snapCand{name, e})
				}
			}
			return nil
		})
		if err != nil {
			ix.log.Debug("scan applications dir", "dir", root, "err", err)
		}
	}
	for _, c := range snaps {
		cur := s.bySnap[c.name]
		main := c.e.app.ID == c.name+"_"+c.name+".desktop"
		if cur == nil || main && cur.app.ID != c.name+"_"+c.name+".desktop" {
			s.bySnap[c.name] = c.e
		}
	}
	ix.log.Debug("desktop entries scanned", "entries", len(entries), "files", files)
	return s
}

// putBetter sets m[k] = e unless the present entry is preferred: one shown
// in menus beats a NoDisplay one, then the earlier (higher precedence) one.
func putBetter(m map[string]*entry, k string, e *entry) {
	cur := m[k]
	if cur == nil || cur.noDisplay && !e.noDisplay || cur.noDisplay == e.noDisplay && e.order < cur.order {
		m[k] = e
	}
}

func readEntry(path string) (*Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: ErrInvalid}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// program returns the program an Exec argv runs, looking through "env"
// and its options and VAR=value assignments, and how many arguments follow it.
func program(argv []string) (prog string, rest int) {
	i := 0
	for i < len(argv) && filepath.Base(argv[i]) == "env" {
		for i++; i < len(argv) && isEnvArg(argv[i]); i++ {
			switch argv[i] {
			case "-u", "--unset", "-C", "--chdir", "-S", "--split-string":
				i++ // the option's value
			}
		}
	}
	if i < len(argv) {
		return argv[i], len(argv) - i - 1
	}
	return "", 0
}

func isEnvArg(a string) bool {
	return strings.HasPrefix(a, "-") || strings.Contains(a, "=") && !strings.HasPrefix(a, "/")
}

// launchers are programs that run something else: never keys.
var launchers = map[string]bool{
	"env": true, "sh": true, "bash": true, "dash": true, "zsh": true, "fish": true, "ksh": true,
	"flatpak": true, "snap": true, "xdg-open": true, "gio": true, "gtk-launch": true,
	"sudo": true, "pkexec": true, "gksu": true, "kdesu": true, "su": true, "nice": true, "ionice": true,
	"perl": true, "ruby": true, "node": true, "nodejs": true, "java": true, "gjs": true, "mono": true,
	"wine": true, "electron": true, "lua": true, "php": true, "tclsh": true, "wish": true,
	"x-terminal-emulator": true, "exo-open": true, "kioclient": true, "kioclient5": true,
	"systemd-run": true, "firejail": true, "bwrap": true, "toolbox": true, "distrobox": true,
}

func isLauncher(name string) bool {
	if launchers[name] {
		return true
	}
	for _, p := range []string{"python", "perl", "ruby", "lua", "electron", "java"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// exeKeys returns the absolute paths (program, TryExec, and their symlink
// targets) and file names an entry is found by. A launcher or interpreter is
// a key only as the program of an Exec line without arguments (Python's own
// "Exec=python3.11" names python; "Exec=python3 app.py" does not), never as
// TryExec or as a symlink target (/snap/bin/x → /usr/bin/snap).
func (ix *Index) exeKeys(prog string, progArgs int, tryExec string) (keys, bases []string) {
	add := func(list []string, v string) []string {
		for _, x := range list {
			if x == v {
				return list
			}
		}
		return append(list, v)
	}
	for i, p := range []string{prog, tryExec} {
		if p == "" || isLauncher(filepath.Base(p)) && (i == 1 || progArgs > 0) {
			continue
		}
		bases = add(bases, filepath.Base(p))
		abs := ix.resolve(p)
		if abs == "" {
			if filepath.IsAbs(p) {
				keys = add(keys, filepath.Clean(p)) // not installed here (yet): still a key
			}
			continue
		}
		keys = add(keys, abs)
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs && !isLauncher(filepath.Base(real)) {
			keys = add(keys, real)
			bases = add(bases, filepath.Base(real))
		}
	}
	return keys, bases
}

// resolve returns the absolute path of an executable file: p itself when
// absolute, else the first of BinDirs that holds it. "" when there is none.
func (ix *Index) resolve(p string) string {
	if filepath.IsAbs(p) {
		if isExecutable(p) {
			return filepath.Clean(p)
		}
		return ""
	}
	if strings.ContainsRune(p, '/') {
		return "" // relative paths are not allowed by the spec
	}
	for _, d := range ix.binDirs {
		if c := filepath.Join(d, p); isExecutable(c) {
			return c
		}
	}
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Apps returns every indexed application, sorted by id (for lists and
// completion).
func (ix *Index) Apps() []App {
	s := ix.current()
	out := make([]App, 0, len(s.byID))
	for _, e := range s.byID {
		a := e.app
		a.IconPath = s.icon(a.IconName)
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
