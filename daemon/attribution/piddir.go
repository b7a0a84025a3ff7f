package attribution

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// pidDir is an open /proc/PID directory. It stays bound to the process
// instance it was opened for: once that process is gone, nothing below it
// can be read any more (ENOENT), even when a new process has taken the pid
// meanwhile. Reading a recent holder's fds through it therefore proves, with
// no stat read, that the same process (pid, start) still holds them. It is
// an *os.File so that closing it while a lookup uses it is safe.
type pidDir struct {
	f     *os.File
	rc    syscall.RawConn
	pid   int
	start uint64 // the start time of the process it is bound to
}

// openPidDir opens /proc/PID for the process (pid, start); it fails when
// pid is now another process (or none).
func (p *procFS) openPidDir(pid int, start uint64) (*pidDir, error) {
	f, err := os.Open(p.path(pid, ""))
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open /proc dir of pid %d: %w", pid, err)
	}
	d := &pidDir{f: f, rc: rc, pid: pid, start: start}
	st, err := d.stat()
	if err != nil || st.Start != start || st.exited() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
		}
		return nil, err
	}
	return d, nil
}

// close releases the directory (after any read in progress).
func (d *pidDir) close() { d.f.Close() }

// stat reads the main thread's stat of the bound process (see procFS.stat).
func (d *pidDir) stat() (statInfo, error) {
	var pb [48]byte
	name := append(pb[:0], "task/"...)
	name = strconv.AppendInt(name, int64(d.pid), 10)
	name = append(name, "/stat"...)
	var b [512]byte
	var data []byte
	var rerr error
	err := d.rc.Control(func(dfd uintptr) {
		fd, err := openatRead(int(dfd), string(name))
		if err != nil {
			rerr = err
			return
		}
		defer unix.Close(fd)
		data, rerr = readFD(fd, string(name), b[:0])
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return statInfo{}, fmt.Errorf("read stat of pid %d: %w", d.pid, err)
	}
	st, err := parseStat(data)
	if err != nil {
		return statInfo{}, fmt.Errorf("read stat of pid %d: %w", d.pid, err)
	}
	return st, nil
}

// fdSocket reads the link of the bound process's fd and returns the socket
// inode it names; false when it is not a socket, is closed, or the process
// is gone.
func (d *pidDir) fdSocket(p *procFS, fd int) (uint64, bool) {
	var nb [32]byte
	name := strconv.AppendInt(append(nb[:0], "fd/"...), int64(fd), 10)
	var buf [64]byte
	k := -1
	p.fdLinks.Add(1)
	err := d.rc.Control(func(dfd uintptr) {
		k, _ = unix.Readlinkat(int(dfd), string(name), buf[:])
	})
	if err != nil || k < 0 || k >= len(buf) {
		return 0, false
	}
	return parseSocketLink(buf[:k])
}

// openatRead opens name below the directory dfd read-only.
func openatRead(dfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: name, Err: err}
		}
		return fd, nil
	}
}
