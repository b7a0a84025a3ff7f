// Command tgdemo shows tollgated at work in a sandbox: it creates a client
// and a server network namespace joined by veth, runs the daemon inside the
// client namespace with an embedded demo configuration, makes one allowed and
// one denied connection, prints the daemon's log lines that explain them, and
// removes everything again. It never touches the host's firewall.
package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/tollgate-fw/tollgate/internal/netns"
)

var (
	//go:embed demo.toml
	demoConfig []byte
	//go:embed rules.toml
	demoRules string
)

func main() {
	bin := flag.String("bin", "bin", "directory holding tollgated and tgprobe")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tgdemo: needs root to create network namespaces (sudo make demo)")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "tgdemo:", err)
		stop()
		os.Exit(1)
	}
}

func say(format string, a ...any) { fmt.Printf("\n== "+format+"\n", a...) }

func run(ctx context.Context, bin string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tollgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)

	say("creating sandbox: client and server network namespaces joined by veth (no route out)")
	pair, err := netns.CreatePair("demo")
	if err != nil {
		return err
	}
	defer func() {
		pair.Delete()
		say("removed namespaces %s and %s", pair.Client, pair.Server)
	}()
	fmt.Printf("   client %s: %s   server %s: %s\n", pair.Client, pair.ClientIP4, pair.Server, pair.ServerIP4)

	browser := filepath.Join(dir, "browser")
	other := filepath.Join(dir, "updater")
	for _, p := range []string{browser, other} {
		if err := copyFile(filepath.Join(bin, "tgprobe"), p); err != nil {
			return err
		}
	}
	// The demo's daemon serves D-Bus on a socket nobody listens on: it
	// never reaches the machine's own bus (without a bus nobody is asked
	// and the default applies, which is what the demo shows).
	cfg := append(bytes.Clone(demoConfig), fmt.Sprintf("bus_address = %q\n", "unix:path="+filepath.Join(dir, "no-bus"))...)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), cfg, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "rules.d"), 0o755); err != nil {
		return err
	}
	var rules bytes.Buffer
	template.Must(template.New("rules").Parse(demoRules)).Execute(&rules, map[string]string{"Allowed": browser})
	if err := os.WriteFile(filepath.Join(dir, "rules.d", "demo.toml"), rules.Bytes(), 0o644); err != nil {
		return err
	}
	say("rules.d/demo.toml (read-only system rules):")
	fmt.Print(indent(rules.String()))

	server := exec.CommandContext(ctx, "ip", "netns", "exec", pair.Server, filepath.Join(bin, "tgprobe"), "serve", "-tcp", ":7000")
	if err := server.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer stopProc(server)

	say("starting tollgated in the client namespace (default action: deny)")
	daemon := exec.Command("ip", "netns", "exec", pair.Client, filepath.Join(bin, "tollgated"), "-config", filepath.Join(dir, "config.toml"))
	logs, err := daemon.StderrPipe()
	if err != nil {
		return err
	}
	if err := daemon.Start(); err != nil {
		return fmt.Errorf("start tollgated: %w", err)
	}
	defer stopProc(daemon)
	lines := make(chan string, 256)
	go pump(logs, lines)
	if err := waitLine(ctx, lines, "tollgated running", 15*time.Second); err != nil {
		return err
	}
	target := net.JoinHostPort(pair.ServerIP4.String(), "7000")

	for _, c := range []struct{ exe, what string }{
		{browser, "allowed by the rule"},
		{other, "no rule: default deny"},
	} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		say("%s connects to %s (%s)", filepath.Base(c.exe), target, c.what)
		out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", pair.Client, c.exe, "connect", "-timeout", "2s", "tcp", target).CombinedOutput()
		fmt.Printf("   client says: %s\n", strings.TrimSpace(string(out)))
		if line, err := nextDecision(ctx, lines, 3*time.Second); err == nil {
			fmt.Printf("   tollgated says: %s\n", line)
		}
	}

	say("stopping tollgated (SIGTERM): it removes its chains")
	daemon.Process.Signal(syscall.SIGTERM)
	waitLine(ctx, lines, "tollgated stopped", 10*time.Second)
	daemon.Wait()
	out, _ := exec.Command("ip", "netns", "exec", pair.Client, "iptables", "-w", "-S").CombinedOutput()
	if strings.Contains(string(out), "TOLLGATE") {
		return errors.New("chains left behind after SIGTERM")
	}
	fmt.Println("   client namespace's iptables after stop:")
	fmt.Print(indent(string(out)))
	return nil
}

func pump(r io.Reader, lines chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		select {
		case lines <- sc.Text():
		default: // the demo reads only what it shows
		}
	}
	close(lines)
}

func waitLine(ctx context.Context, lines <-chan string, want string, d time.Duration) error {
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return fmt.Errorf("tollgated exited before %q", want)
			}
			if strings.Contains(l, "level=ERROR") || strings.Contains(l, want) {
				fmt.Printf("   tollgated says: %s\n", l)
			}
			if strings.Contains(l, want) {
				return nil
			}
		case <-timeout:
			return fmt.Errorf("no %q from tollgated within %s", want, d)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func nextDecision(ctx context.Context, lines <-chan string, d time.Duration) (string, error) {
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", errors.New("tollgated exited")
			}
			if strings.Contains(l, "msg=decided") {
				return l, nil
			}
		case <-timeout:
			return "", errors.New("no decision logged")
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func stopProc(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("   | " + l + "\n")
	}
	return b.String()
}
