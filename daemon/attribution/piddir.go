package attribution

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
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

	mu    sync.Mutex
	tick  uint64   // counts reads noted
	slots []fdSlot // sockets seen at the process's fds, at most maxSlots
}

// fdSlot is what the last read of one fd of the bound process showed: a
// socket or none, and when that read was. A busy client's lookups trail
// its sockets (while one connection's packet waits in the queue, its
// workers have made more), so the fd read longest ago is the one most
// likely to hold a socket no read has seen yet: the one looked for, or one
// a later lookup finds in the index. Reading fds in that order reads few
// sockets twice. Slots only order the probes: a hit is always the link
// read afresh.
type fdSlot struct {
	fd     int
	inode  uint64 // 0: no socket there (another file, or closed)
	read   uint64 // tick of the last read
	misses uint8  // reads in a row that found it unchanged: a long-lived socket (or file)
}

const (
	// maxSlots bounds the fds remembered per bound process.
	maxSlots = 64
	// maxOldest is how many of the fds read longest ago a probe reads.
	maxOldest = 8
	// maxMisses is how often in a row an fd may be read unchanged before
	// it is taken for a long-lived socket and no longer probed first.
	maxMisses = 3
)

// note records what a read of fd showed: inode (0: no socket there).
func (d *pidDir) note(fd int, inode uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tick++
	if i := slices.IndexFunc(d.slots, func(s fdSlot) bool { return s.fd == fd }); i >= 0 {
		s := &d.slots[i]
		if s.inode == inode {
			s.misses = min(s.misses+1, maxMisses)
		} else {
			s.inode, s.misses = inode, 0
		}
		s.read = d.tick
		return
	}
	s := fdSlot{fd: fd, inode: inode, read: d.tick}
	if len(d.slots) >= maxSlots {
		// Forget the long-lived first, then the one read longest ago.
		j := 0
		for k, t := range d.slots {
			if t.misses > d.slots[j].misses || (t.misses == d.slots[j].misses && t.read < d.slots[j].read) {
				j = k
			}
		}
		d.slots[j] = s
		return
	}
	d.slots = append(d.slots, s)
}

// probeOrder appends to fds the fds to read, in order, looking for the new
// socket want of the bound process; hint is where its last new socket was
// found. First the hint when no read through d has seen it (it was found
// otherwise); then the fd read longest ago (see fdSlot); then the fds up
// to probeSpan from the hint that no read has seen (the fds climb while
// earlier sockets stay open); then the rest of the maxOldest fds read
// longest ago; then the known fds up to probeSpan from the hint. Fds that
// held no socket or were read unchanged maxMisses times in a row wait for
// the hint's span to reach them; left out always are fds holding a socket made after want (see
// newerSocket): want was open when it was made, so it is not at that fd.
func (d *pidDir) probeOrder(fds []int, want uint64, hint int) []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	slot := func(fd int) (fdSlot, bool) {
		for _, s := range d.slots {
			if s.fd == fd {
				return s, true
			}
		}
		return fdSlot{}, false
	}
	add := func(fd int) {
		if fd >= 0 && !slices.Contains(fds, fd) {
			fds = append(fds, fd)
		}
	}
	// The maxOldest eligible slots read longest ago, oldest first.
	var pick [maxOldest]fdSlot
	n := 0
	for _, s := range d.slots {
		if s.inode == 0 || s.misses >= maxMisses || newerSocket(s.inode, want) {
			continue
		}
		j := n
		if n < maxOldest {
			n++
		} else if s.read >= pick[n-1].read {
			continue
		} else {
			j = n - 1
		}
		for j > 0 && pick[j-1].read > s.read {
			pick[j] = pick[j-1]
			j--
		}
		pick[j] = s
	}
	span := func(fn func(fd int)) {
		if hint < 0 {
			return
		}
		for i := 0; i <= 2*probeSpan; i++ {
			// hint, +1, -1, +2, -2, ...
			fd := hint + (i+1)/2
			if i%2 == 0 {
				fd = hint - i/2
			}
			fn(fd)
		}
	}
	if _, known := slot(hint); hint >= 0 && !known {
		add(hint)
	}
	if n > 0 {
		add(pick[0].fd)
	}
	span(func(fd int) {
		if _, known := slot(fd); !known {
			add(fd)
		}
	})
	for _, s := range pick[:n] {
		add(s.fd)
	}
	span(func(fd int) {
		if s, known := slot(fd); known && !newerSocket(s.inode, want) {
			add(fd)
		}
	})
	return fds
}

// inoBatch is how many inode numbers a CPU takes at a time for sockets
// (the kernel's get_next_ino, LAST_INO_BATCH): within one aligned batch,
// numbers are handed out in order on one CPU.
const inoBatch = 1024

// newerSocket reports whether socket inode was surely made after want:
// a higher number of the same batch. Across batches nothing is known.
// The order only steers which fds are probed first; a kernel numbering
// sockets otherwise costs probes, never a wrong answer.
func newerSocket(inode, want uint64) bool {
	return inode > want && inode/inoBatch == want/inoBatch
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

// probe reads fd and notes what it shows (see note); it returns the
// socket there, if any.
func (d *pidDir) probe(p *procFS, fd int) (uint64, bool) {
	got, ok := d.fdSocket(p, fd)
	if !ok {
		got = 0
	}
	d.note(fd, got)
	return got, ok
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
