package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"github.com/tollgate-fw/tollgate/internal/nstest"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/ui/tray/prompt"
)

// The end-to-end test of the tray: the real tollgated guards a client
// network namespace and serves a private system-like bus (the packaged
// D-Bus policy included); tollgate-tray runs as an unprivileged user on a
// private X server (Xvfb); a connection by a process of that same user is
// held, the prompt window appears (screenshot saved), and a real mouse
// click (xdotool) on Allow lets the connection through. Binaries only: the
// test never imports the daemon.

// The user the tray and the held connection run as.
const (
	trayUID = 65534 // nobody
	trayGID = 65534
)

func repoRoot(t *testing.T) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "..")
}

// start starts a process for t, with env (nil: the test's own); cleanup
// stops it by its pid and logs its output if the test failed.
func start(t *testing.T, env []string, name string, args ...string) *proctest.Proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = env
	}
	return proctest.StartTest(t, cmd, proctest.AtCleanup{Grace: 10 * time.Second, LogOutput: true})
}

// build builds the binaries into a directory every user can read.
func build(t *testing.T, dir string) {
	t.Helper()
	steps := []struct {
		cgo  string
		pkgs []string
	}{
		{"0", []string{"./daemon/cmd/tollgated", "./internal/cmd/tgprobe"}},
		{"1", []string{"./ui/cmd/tollgate-tray"}},
	}
	for _, s := range steps {
		cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, s.pkgs...)...)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+s.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %v: %v\n%s", s.pkgs, err, out)
		}
	}
}

// xvfb starts a private X server on a free display and returns ":N".
func xvfb(t *testing.T) string {
	t.Helper()
	for n := 90; n < 190; n++ {
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		display := ":" + strconv.Itoa(n)
		x := start(t, nil, "Xvfb", display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp", "-nolisten", "unix-abstract")
		sock := fmt.Sprintf("/tmp/.X11-unix/X%d", n)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && !x.Exited() {
			if _, err := os.Stat(sock); err == nil {
				return display
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !x.Exited() {
			t.Fatalf("Xvfb %s: no socket after 20s:\n%s", display, x.Output())
		}
		// Lost a race for the display: try the next one.
	}
	t.Fatal("no free X display in :90-:189")
	return ""
}

func TestIntegrationTrayPromptClick(t *testing.T) {
	began := time.Now()
	nstest.RequireRoot(t)
	for _, tool := range []string{"dbus-daemon", "ip", "setpriv", "Xvfb", "xdotool", "import"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps: xvfb xdotool imagemagick dbus-daemon iproute2 util-linux): %v", tool, err)
		}
	}
	dir := bustest.Dir(t)
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	build(t, bin)
	t.Logf("built in %v", time.Since(began).Round(time.Millisecond))

	display := xvfb(t)
	bus := bustest.StartIn(t, dir, false)
	pair := nstest.NewPair(t)
	target := fmt.Sprintf("%s:7000", pair.ServerIP4)
	server := start(t, nil, "ip", "netns", "exec", pair.Server, filepath.Join(bin, "tgprobe"), "serve", "-tcp", ":7000")
	proctest.WaitFor(t, 10*time.Second, "the echo server", func() bool { return strings.Contains(server.Output(), "ready") })

	os.MkdirAll(filepath.Join(dir, "rules.d"), 0o755)
	cfg := filepath.Join(dir, "config.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`database = %q
rules_dir = %q
prompt_timeout = "60s"
database_lock_timeout = "2s"
default_action = "deny"
bus_address = %q
polkit = false
log_level = "debug"
`, filepath.Join(dir, "tollgate.db"), filepath.Join(dir, "rules.d"), bus.Addr)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	start(t, nil, "ip", "netns", "exec", pair.Client, filepath.Join(bin, "tollgated"), "-config", cfg)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var client *dbus.Client
	proctest.WaitFor(t, 30*time.Second, "tollgated on the bus", func() bool {
		if client == nil {
			client, _ = dbus.Dial(ctx, bus.Addr)
		}
		if client == nil {
			return false
		}
		_, err := client.GetStatus(ctx)
		return err == nil
	})
	defer client.Close()

	// The tray as the unprivileged user, with a home of its own, no
	// session bus (so no tray host: the prompt must appear anyway).
	home := filepath.Join(dir, "home")
	for _, d := range []string{home, filepath.Join(home, ".cache"), filepath.Join(home, ".config")} {
		os.Mkdir(d, 0o700)
		os.Chown(d, trayUID, trayGID)
	}
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"DISPLAY=" + display,
		"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Addr,
		"DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(dir, "no-session-bus"),
		"XDG_RUNTIME_DIR=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
	}
	if v := os.Getenv("LIBGL_ALWAYS_SOFTWARE"); v != "" {
		env = append(env, "LIBGL_ALWAYS_SOFTWARE="+v)
	}
	const armDelay = time.Second
	tray := start(t, env, "setpriv", fmt.Sprintf("--reuid=%d", trayUID), fmt.Sprintf("--regid=%d", trayGID), "--clear-groups",
		filepath.Join(bin, "tollgate-tray"), "-status-window", "never", "-arm-delay", armDelay.String(), "-v")
	proctest.WaitFor(t, 60*time.Second, "the tray registered as an agent", func() bool {
		if tray.Exited() {
			t.Fatalf("tollgate-tray exited: %v\n%s", tray.Wait(), tray.Output())
		}
		st, err := client.GetStatus(ctx)
		return err == nil && st.Agents >= 1
	})
	t.Logf("tray registered %v after start", time.Since(began).Round(time.Millisecond))

	// A connection by a process of the same user, from the guarded
	// namespace: held for the prompt.
	probe := filepath.Join(dir, "probe")
	data, err := os.ReadFile(filepath.Join(bin, "tgprobe"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	held := start(t, nil, "ip", "netns", "exec", pair.Client, "setpriv", fmt.Sprintf("--reuid=%d", trayUID),
		fmt.Sprintf("--regid=%d", trayGID), "--clear-groups", probe, "connect", "-timeout", "50s", "tcp", target)

	xenv := append(os.Environ(), "DISPLAY="+display)
	var win string
	proctest.WaitFor(t, 30*time.Second, "the prompt window (xdotool search)", func() bool {
		if held.Exited() {
			t.Fatalf("the connection was not held: %s", held.Output())
		}
		out, err := xcmd(xenv, "xdotool", "search", "--onlyvisible", "--name", "^Tollgate")
		if err != nil {
			return false
		}
		for _, id := range strings.Fields(out) {
			name, _ := xcmd(xenv, "xdotool", "getwindowname", id)
			if strings.TrimSpace(name) == prompt.Title {
				win = id
				return true
			}
		}
		return false
	})
	seen := time.Now()
	t.Logf("prompt window %s appeared %v after start", win, time.Since(began).Round(time.Millisecond))

	// Find Allow on a screenshot: the only button in the primary colour
	// (the default theme's, with the default primary colour: a test app
	// has Fyne's default settings).
	test.NewTempApp(t)
	primaries := []color.Color{
		theme.DefaultTheme().Color(theme.ColorNamePrimary, theme.VariantLight),
		theme.DefaultTheme().Color(theme.ColorNamePrimary, theme.VariantDark),
	}
	shot := filepath.Join(artifacts(t), "tray-prompt.png")
	var at image.Point
	proctest.WaitFor(t, 20*time.Second, "the Allow button on a screenshot", func() bool {
		if _, err := xcmd(xenv, "import", "-window", "root", shot); err != nil {
			return false
		}
		img, err := readPNG(shot)
		if err != nil {
			return false
		}
		var n int
		at, n = largestBlob(img, primaries)
		return n >= 400 // a button, not a radio dot or a focus line
	})
	t.Logf("screenshot: %s (Allow at %v)", shot, at)

	// Keys and clicks are ignored for the arming delay after the prompt
	// appears: that delay is the behaviour under test, not a sync.
	if d := armDelay + 500*time.Millisecond - time.Since(seen); d > 0 {
		time.Sleep(d)
	}
	if out, err := xcmd(xenv, "xdotool", "mousemove", strconv.Itoa(at.X), strconv.Itoa(at.Y), "click", "1"); err != nil {
		t.Fatalf("xdotool click: %v\n%s", err, out)
	}
	select {
	case <-held.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("the held connection did not end after the click on Allow:\n%s", held.Output())
	}
	if err := held.Wait(); err != nil || !strings.Contains(held.Output(), "ok") {
		t.Fatalf("held connection after Allow: %v: %s", err, held.Output())
	}
	proctest.WaitFor(t, 10*time.Second, "the prompt window to go", func() bool {
		out, _ := xcmd(xenv, "xdotool", "search", "--onlyvisible", "--name", "^Tollgate")
		return !strings.Contains(" "+out+" ", win)
	})
	if tray.Exited() {
		t.Fatalf("tollgate-tray exited: %v", tray.Wait())
	}

	// SIGTERM quits the tray cleanly: it unregisters as the agent.
	if err := tray.Stop(syscall.SIGTERM, 15*time.Second); errors.Is(err, proctest.ErrKilled) {
		t.Fatal("tollgate-tray did not quit on SIGTERM")
	} else if err != nil {
		t.Errorf("tollgate-tray on SIGTERM: %v", err)
	}
	proctest.WaitFor(t, 10*time.Second, "the agent gone", func() bool {
		st, err := client.GetStatus(ctx)
		return err == nil && st.Agents == 0
	})
	t.Logf("tray log:\n%s", tray.Output())
	t.Logf("end to end in %v", time.Since(began).Round(time.Millisecond))
}

// artifacts is where screenshots go: $TOLLGATE_ARTIFACTS, else the test's
// temporary directory.
func artifacts(t *testing.T) string {
	if d := os.Getenv("TOLLGATE_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func xcmd(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readPNG(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return png.Decode(f)
}

// near reports whether c is within a small distance of one of want (the
// screen is 24-bit; the renderer may round).
func near(c color.Color, want []color.Color) bool {
	r, g, b, _ := c.RGBA()
	for _, w := range want {
		wr, wg, wb, _ := w.RGBA()
		if absDiff(r, wr) <= 6<<8 && absDiff(g, wg) <= 6<<8 && absDiff(b, wb) <= 6<<8 {
			return true
		}
	}
	return false
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// largestBlob finds the largest 4-connected area of pixels near one of
// the colours and returns its centre (the middle of its bounding box) and
// its size in pixels.
func largestBlob(img image.Image, colors []color.Color) (image.Point, int) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	match := make([]bool, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			match[y*w+x] = near(img.At(b.Min.X+x, b.Min.Y+y), colors)
		}
	}
	seen := make([]bool, w*h)
	best, bestN := image.Rectangle{}, 0
	stack := []int{}
	for i := range match {
		if !match[i] || seen[i] {
			continue
		}
		seen[i] = true
		stack = append(stack[:0], i)
		n := 0
		r := image.Rect(i%w, i/w, i%w+1, i/w+1)
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			n++
			x, y := j%w, j/w
			r = r.Union(image.Rect(x, y, x+1, y+1))
			for _, k := range []int{j - 1, j + 1, j - w, j + w} {
				if k < 0 || k >= len(match) || seen[k] || !match[k] {
					continue
				}
				if (k == j-1 && x == 0) || (k == j+1 && x == w-1) {
					continue
				}
				seen[k] = true
				stack = append(stack, k)
			}
		}
		if n > bestN {
			best, bestN = r, n
		}
	}
	c := image.Pt(b.Min.X+(best.Min.X+best.Max.X)/2, b.Min.Y+(best.Min.Y+best.Max.Y)/2)
	return c, bestN
}
