package attribution

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// procFS reads the process table under a proc root: /proc, or a fake tree
// of plain files and symlinks in tests. Everything it reads has the layout
// of procfs (PID/stat, PID/fd/N → "socket:[inode]", PID/exe, net/icmp...).
type procFS struct {
	root    string
	statOwn func(string, *unix.Stat_t) error // stat in the daemon's mount namespace
	fdLinks atomic.Uint64                    // fd links read
}

// newProcFS reads the process table under root; statOwn (nil: unix.Stat)
// stats paths as the daemon's own mount namespace sees them.
func newProcFS(root string, statOwn func(string, *unix.Stat_t) error) *procFS {
	if statOwn == nil {
		statOwn = unix.Stat
	}
	return &procFS{
		root:    root,
		statOwn: statOwn,
	}
}

func (p *procFS) path(pid int, name string) string {
	return filepath.Join(p.root, strconv.Itoa(pid), name)
}

// readSmall reads a small proc file into buf (grown if needed). It uses
// the file descriptor directly: an *os.File would register it with the
// runtime's poller and allocate, which costs more than the read itself for
// a file of a few hundred bytes.
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := openRead(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return readFD(fd, path, buf)
}

// readPrefix reads at most n bytes from the start of path into buf (grown
// if needed).
func readPrefix(path string, buf []byte, n int) ([]byte, error) {
	fd, err := openRead(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf = slices.Grow(buf[:0], n)
	for len(buf) < n {
		m, err := unix.Read(fd, buf[len(buf):n])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		buf = buf[:len(buf)+m]
	}
	return buf, nil
}

// readFD reads the small file open at fd (path names it in errors).
func readFD(fd int, path string, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 512)
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) > 1<<20 {
			return nil, fmt.Errorf("read %s: larger than 1 MiB", path)
		}
	}
}

// openRead opens path read-only (close-on-exec) and returns the descriptor;
// errors are *fs.PathError, so isGone holds for a vanished process.
func openRead(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// stat reads the stat of pid's main thread, /proc/PID/task/PID/stat: the
// fields read (state, parent, start time) are the process's own there too
// (/proc/PID/stat shows the main thread's as well), while /proc/PID/stat
// sums the CPU times of every thread, which costs a busy multi-threaded
// process more than the rest of a lookup.
func (p *procFS) stat(pid int) (statInfo, error) {
	var b [512]byte
	var pb [64]byte
	path := append(append(pb[:0], p.root...), '/')
	path = strconv.AppendInt(path, int64(pid), 10)
	path = append(path, "/task/"...)
	path = strconv.AppendInt(path, int64(pid), 10)
	path = append(path, "/stat"...)
	data, err := readSmall(string(path), b[:0])
	if err != nil {
		return statInfo{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	st, err := parseStat(data)
	if err != nil {
		return statInfo{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return st, nil
}

// owner returns the owner of /proc/PID: the process's effective uid, or
// root for a process that is not dumpable.
func (p *procFS) owner(pid int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(p.root, strconv.Itoa(pid)), &st); err != nil {
		return 0, err
	}
	return st.Uid, nil
}

// pids lists the process ids under the root, highest (newest) first.
func (p *procFS) pids() ([]int, error) {
	d, err := os.Open(p.root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n == "" || n[0] < '1' || n[0] > '9' {
			continue
		}
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			pids = append(pids, v)
		}
	}
	slices.SortFunc(pids, func(a, b int) int { return b - a })
	return pids, nil
}

// sockets calls fn for every socket among the open files of pid, with its
// inode and fd number, until fn returns false.
func (p *procFS) sockets(pid int, fn func(inode uint64, fd int) bool) error {
	d, err := os.Open(p.path(pid, "fd"))
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	dfd := int(d.Fd())
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < 0 {
			continue
		}
		inode, ok := p.fdSocket(dfd, fd)
		if !ok {
			continue
		}
		if !fn(inode, fd) {
			return nil
		}
	}
	return nil
}

// probeSpan is how far from the hint findSocket probes fds before it
// lists them all: a new socket mostly takes the lowest free fd, which is
// the hint again after a close, or the next one up while the earlier
// sockets stay open.
const probeSpan = 8

// findSocket looks for socket want among the open files of pid and returns
// its fd, or -1. With a hint (the fd where pid's last new socket was
// found; -1 for none) it first reads the links of the fds nearest to it
// (hint, hint+1, hint-1, ... up to probeSpan away), without listing the
// fds; when want is not there it lists them and reads their links nearest
// to the hint first (without a hint, in directory order), stopping at the
// first match. The match is the link of that fd of that pid reading
// socket:[want], so the hint decides only the cost. seen is called for
// every socket read (including the match). With probeOnly it stops after
// the probes.
func (p *procFS) findSocket(pid int, want uint64, hint int, probeOnly bool, seen func(inode uint64, fd int)) (int, error) {
	// The directory is opened without an *os.File (no poller, no
	// allocation) unless the probes miss and its entries must be listed.
	dir := p.path(pid, "fd")
	dfd, err := openRead(dir)
	if err != nil {
		return -1, err
	}
	var d *os.File
	defer func() {
		if d != nil {
			d.Close()
		} else {
			unix.Close(dfd)
		}
	}()
	try := func(fd int) bool {
		inode, ok := p.fdSocket(dfd, fd)
		if !ok {
			return false
		}
		seen(inode, fd)
		return inode == want
	}
	if hint >= 0 {
		for i := 0; i <= 2*probeSpan; i++ {
			// 0, +1, -1, +2, -2, ...
			fd := hint + (i+1)/2
			if i%2 == 0 {
				fd = hint - i/2
			}
			if fd >= 0 && try(fd) {
				return fd, nil
			}
		}
	}
	if probeOnly {
		return -1, nil
	}
	d = os.NewFile(uintptr(dfd), dir)
	names, err := d.Readdirnames(-1)
	if err != nil {
		return -1, err
	}
	fds := make([]int, 0, len(names))
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil && fd >= 0 {
			fds = append(fds, fd)
		}
	}
	if hint >= 0 {
		// Nearest to the hint first; at equal distance the higher.
		slices.SortFunc(fds, func(a, b int) int {
			da, db := dist(a, hint), dist(b, hint)
			if da != db {
				return da - db
			}
			return b - a
		})
	}
	// The probed fds are read again: one may have become want meanwhile
	// (dup2 onto it), and rereading a few costs little.
	for _, fd := range fds {
		if try(fd) {
			return fd, nil
		}
	}
	return -1, nil
}

func dist(a, b int) int {
	if a > b {
		return a - b
	}
	return b - a
}

// fdSocket reads the link of fd in the fd directory dfd and returns the
// socket inode it names; false when it is not a socket or is gone.
func (p *procFS) fdSocket(dfd, fd int) (uint64, bool) {
	var buf [64]byte
	p.fdLinks.Add(1)
	k, err := unix.Readlinkat(dfd, strconv.Itoa(fd), buf[:])
	if err != nil || k >= len(buf) {
		return 0, false // closed meanwhile, or not a socket (long path)
	}
	return parseSocketLink(buf[:k])
}

// fdHolds reports whether fd of pid is socket inode right now.
func (p *procFS) fdHolds(pid, fd int, inode uint64) bool {
	var buf [64]byte
	p.fdLinks.Add(1)
	k, err := unix.Readlink(filepath.Join(p.root, strconv.Itoa(pid), "fd", strconv.Itoa(fd)), buf[:])
	if err != nil || k >= len(buf) {
		return false
	}
	got, ok := parseSocketLink(buf[:k])
	return ok && got == inode
}

// exeLink reads the /proc/PID/exe link.
func (p *procFS) exeLink(pid int) (string, error) {
	return os.Readlink(p.path(pid, "exe")) // grows its buffer: never a truncated path
}

// deletedSuffix is what the kernel appends to /proc/PID/exe when the
// image's file was removed or replaced.
const deletedSuffix = " (deleted)"

// verifyExe checks the path a process's exe link names against its running
// image (img, the stat of /proc/PID/exe). The link is the path in the
// process's own mount namespace, which the process may have built itself;
// it is verified when the same path in the daemon's mount namespace is the
// same file (device and inode). It returns the path without
// " (deleted)" — a link with that suffix is never verified (the file the
// image came from is no longer at the path, and a file may be named so) —
// and whether it is verified.
func (p *procFS) verifyExe(link string, img *unix.Stat_t) (string, bool) {
	path, deleted := strings.CutSuffix(link, deletedSuffix)
	if deleted || !filepath.IsAbs(path) {
		return path, false
	}
	var st unix.Stat_t
	if err := p.statOwn(path, &st); err != nil {
		return path, false
	}
	return path, st.Dev == img.Dev && st.Ino == img.Ino
}

// isGone says whether err means the process (or one of its files) no
// longer exists.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}
