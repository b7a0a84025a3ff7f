// Command tollgate-tray is Tollgate's desktop app: the status icon, the
// prompts for new connections, the rules editor and the connection log. It
// runs as the desktop user, never as root. It is flags and wiring only; the
// app lives in package github.com/tollgate-fw/tollgate/ui/tray.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"fyne.io/fyne/v2/app"

	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/desktop"
	"github.com/tollgate-fw/tollgate/ui/tray"
)

var version = "dev"

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("tollgate-tray", flag.ContinueOnError)
	busAddr := fs.String("bus", "", "D-Bus address of the system bus (default $DBUS_SYSTEM_BUS_ADDRESS, else the system socket)")
	window := fs.String("status-window", string(tray.WindowAuto), "show the status window: auto (when there is no tray host), always, never")
	action := fs.String("action", "deny", "prompt: preselected action (allow, deny, reject); Enter answers it")
	lifetime := fs.String("lifetime", "once", "prompt: preselected lifetime (once, session, process, forever)")
	scope := fs.String("scope", "exe-host-port", "prompt: preselected scope (exe-host-port, exe-host, exe-any, any-exe-host)")
	arm := fs.Duration("arm-delay", 0, "prompt: keys and clicks are ignored this long after a prompt appears (0: the default, 1s)")
	verbose := fs.Bool("v", false, "log debug messages")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println("tollgate-tray", version)
		return 0
	}
	if err := tray.CheckUser(os.Getuid(), os.Geteuid()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	o := tray.Options{
		UID:          uint32(os.Getuid()),
		Dial:         tray.DialBus(*busAddr),
		ArmDelay:     *arm,
		StatusWindow: tray.WindowMode(*window),
		Apps:         desktop.NewIndex(desktop.DefaultDirs()),
	}
	var err error
	if o.Action, err = shared.ParseAction(*action); err != nil {
		fmt.Fprintln(os.Stderr, "-action:", err)
		return 2
	}
	if o.Lifetime, err = shared.ParseLifetime(*lifetime); err != nil {
		fmt.Fprintln(os.Stderr, "-lifetime:", err)
		return 2
	}
	if o.Scope, err = shared.ParseAnswerScope(*scope); err != nil {
		fmt.Fprintln(os.Stderr, "-scope:", err)
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := app.NewWithID("org.tollgate.Tray")
	t, err := tray.New(a, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tollgate-tray:", err)
		return 2
	}
	t.Run(ctx)
	return 0
}
