package attribution

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// setExeLink points the fake /proc/PID/exe at target.
func (f *fakeProc) setExeLink(pid int, target string) {
	f.t.Helper()
	link := filepath.Join(f.root, strconv.Itoa(pid), "exe")
	_ = os.Remove(link)
	if err := os.Symlink(target, link); err != nil {
		f.t.Fatal(err)
	}
}

// TestLookupExeUnverified: the exe link is the path in the process's own
// mount namespace. Only a path that is the running image in the daemon's
// namespace too is given as Exe; otherwise Exe is empty (no exe rule can
// match), the path is in ExeClaimed and the sha256 is still the image's.
func TestLookupExeUnverified(t *testing.T) {
	const pid = 5100
	curl := fakeProcess{PID: pid, PPID: 1, Start: 700, UID: 1000, GID: 1000, Exe: "curl", Args: []string{"curl", "https://example.org"}, FDs: map[int]uint64{3: 5000}}
	for _, mode := range []string{"no events", "events"} {
		t.Run(mode, func(t *testing.T) {
			events := func() *fakeEvents { // one per attributor: Close ends it
				if mode == "events" {
					return newFakeEvents()
				}
				return nil
			}
			socks := newFakeSockets()
			socks.add(tcpOut, 5000, 1000)

			t.Run("verified", func(t *testing.T) {
				fp := newFakeProc(t)
				fp.add(curl)
				a := testAttributor(t, fp, socks, events())
				p := mustFind(t, a, qOut)
				if p.Exe != fp.exePath("curl") || p.ExeClaimed != "" || p.ExeSHA256 != fp.exeSum("curl") {
					t.Errorf("exe %q claimed %q sha256 %s; want %q, \"\", %s", p.Exe, p.ExeClaimed, p.ExeSHA256, fp.exePath("curl"), fp.exeSum("curl"))
				}
			})

			// unshare -m; mount --bind evil /usr/bin/curl; exec /usr/bin/curl:
			// the link says the path, our namespace has another file there.
			t.Run("another file at the path here", func(t *testing.T) {
				fp := newFakeProc(t)
				fp.add(curl)
				hostCurl := fp.exePath("host-curl")
				a := testAttributor(t, fp, socks, events(), func(o *Options) {
					o.statOwn = func(path string, st *unix.Stat_t) error {
						if path == fp.exePath("curl") {
							path = hostCurl
						}
						return unix.Stat(path, st)
					}
				})
				for range 2 { // read, then from the cache
					p := mustFind(t, a, qOut)
					if p.Exe != "" || p.ExeClaimed != fp.exePath("curl") || p.ExeSHA256 != fp.exeSum("curl") {
						t.Errorf("exe %q claimed %q sha256 %s; want \"\", %q, the image's %s", p.Exe, p.ExeClaimed, p.ExeSHA256, fp.exePath("curl"), fp.exeSum("curl"))
					}
				}
			})

			// A path that does not exist here (a container's, Flatpak's /app).
			t.Run("no file at the path here", func(t *testing.T) {
				fp := newFakeProc(t)
				fp.add(curl)
				a := testAttributor(t, fp, socks, events(), func(o *Options) {
					o.statOwn = func(string, *unix.Stat_t) error { return unix.ENOENT }
				})
				p := mustFind(t, a, qOut)
				if p.Exe != "" || p.ExeClaimed != fp.exePath("curl") || p.ExeSHA256 != fp.exeSum("curl") {
					t.Errorf("exe %q claimed %q sha256 %s; want \"\", %q, %s", p.Exe, p.ExeClaimed, p.ExeSHA256, fp.exePath("curl"), fp.exeSum("curl"))
				}
			})

			// A package upgrade replaced the file: the link gets " (deleted)"
			// and the path now holds another file (or none).
			t.Run("deleted", func(t *testing.T) {
				fp := newFakeProc(t)
				fp.add(curl)
				a := testAttributor(t, fp, socks, events())
				if mode == "no events" {
					// Without the connector, cached facts are re-checked:
					// the upgrade is seen on the next lookup.
					if p := mustFind(t, a, qOut); p.Exe != fp.exePath("curl") {
						t.Fatalf("before the upgrade: exe %q claimed %q", p.Exe, p.ExeClaimed)
					}
				}
				fp.setExeLink(pid, fp.exePath("curl (deleted)")) // the old image, as the link now names it
				if err := os.WriteFile(fp.exePath("curl"), []byte("binary:curl v2"), 0o755); err != nil {
					t.Fatal(err)
				}
				p := mustFind(t, a, qOut)
				if p.Exe != "" || p.ExeClaimed != fp.exePath("curl") || p.ExeSHA256 != fp.exeSum("curl (deleted)") {
					t.Errorf("exe %q claimed %q sha256 %s; want \"\", %q, %s", p.Exe, p.ExeClaimed, p.ExeSHA256, fp.exePath("curl"), fp.exeSum("curl (deleted)"))
				}
			})
		})
	}
}

func TestVerifyExe(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	other := filepath.Join(dir, "other")
	for _, p := range []string{bin, other, bin + deletedSuffix} {
		if err := os.WriteFile(p, []byte(p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(p string) *unix.Stat_t {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	pf := newProcFS(dir, nil)
	for _, tc := range []struct {
		link, image string
		path        string
		ok          bool
	}{
		{bin, bin, bin, true},
		{bin, other, bin, false}, // another file at the path here
		{filepath.Join(dir, "missing"), bin, filepath.Join(dir, "missing"), false}, // none
		{bin + deletedSuffix, bin + deletedSuffix, bin, false},                     // even when a file is so named
		{bin + deletedSuffix, bin, bin, false},                                     // or the path has the same file
		{"bin", bin, "bin", false},                                                 // not absolute
		{"", bin, "", false},
	} {
		path, ok := pf.verifyExe(tc.link, stat(tc.image))
		if path != tc.path || ok != tc.ok {
			t.Errorf("verifyExe(%q, image %q) = %q, %v; want %q, %v", tc.link, tc.image, path, ok, tc.path, tc.ok)
		}
	}
}

// TestHashCacheSeesInPlaceRewrite: the owner rewrites an executable in
// place with the same size and sets its modification time back; the
// cached sum must not be answered for the new bytes.
func TestHashCacheSeesInPlaceRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tool")
	orig, evil := []byte("the original program"), []byte("the replaced program")
	if err := os.WriteFile(path, orig, 0o755); err != nil {
		t.Fatal(err)
	}
	var st0 unix.Stat_t
	if err := unix.Stat(path, &st0); err != nil {
		t.Fatal(err)
	}
	h := newHashCache(8)
	sum := func() string {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s, _, err := h.sum(f)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hexSum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	if got := sum(); got != hexSum(orig) {
		t.Fatalf("sum %s, want %s", got, hexSum(orig))
	}
	// Rewrite and restore the times until the change time moved (on a
	// coarse clock the first rewrite may fall in the same tick).
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteAt(evil, 0)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.UtimesNano(path, []unix.Timespec{st0.Atim, st0.Mtim}); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != st0.Size || st.Mtim != st0.Mtim || st.Ino != st0.Ino {
			t.Fatalf("rewrite changed size, mtime or inode: %+v → %+v", st0, st)
		}
		if st.Ctim != st0.Ctim {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("change time never moved")
		}
	}
	if got := sum(); got != hexSum(evil) {
		t.Errorf("after an in-place rewrite with the mtime set back: sum %s, want %s (the old one is %s)", got, hexSum(evil), hexSum(orig))
	}
}
