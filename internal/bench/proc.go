package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/tollgate-fw/tollgate/internal/syncbuf"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100
// on every Linux architecture Tollgate builds for.
const clockTicks = 100

// proc is a process the harness started; it is stopped by its own pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

func startProc(name string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(name, args...), out: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(append([]string{name}, args...), " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills. It returns the exit
// error, or an error saying it had to be killed.
func (p *proc) stop(grace time.Duration) error {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not exit within %s of SIGTERM: killed", p.cmd.Path, grace)
}

// waitOutput waits until the process's output contains want.
func (p *proc) waitOutput(ctx context.Context, want string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !strings.Contains(p.out.String(), want) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before saying %q: %s", p.cmd.Path, p.err, want, p.out)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not say %q within %s: %s", p.cmd.Path, want, d, p.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// cpuTicks returns the process's user+system CPU time in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu time of %d: malformed stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// After the command: state is field 3; utime 14 and stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu time of %d: short stat", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read cpu time of %d: malformed utime/stime", pid)
	}
	return u + s, nil
}

// rssMB returns the process's resident set size in MiB.
func rssMB(pid int) (float64, error) { return statusMB(pid, "VmRSS") }

// statusMB returns a "kB" field of /proc/PID/status (VmRSS, RssAnon,
// RssFile...) in MiB.
func statusMB(pid int, field string) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("read %s of %d: %q", field, pid, l)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("read %s of %d: not in status", field, pid)
}

// runJSON runs a command to completion and decodes the last line of its
// stdout as JSON into v.
func runJSON(ctx context.Context, v any, name string, args ...string) error {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s%s", strings.Join(append([]string{name}, args...), " "), err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		return fmt.Errorf("%s: decode output %q: %w", name, stdout.String(), err)
	}
	return nil
}
