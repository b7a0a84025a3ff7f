// Command tollgate is the command-line client of the Tollgate firewall
// daemon. It is flags and wiring only; the commands live in package
// github.com/tollgate-fw/tollgate/ui/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tollgate-fw/tollgate/ui/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.New(os.Stdin, os.Stdout, os.Stderr).Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
