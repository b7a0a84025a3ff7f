package attribution

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeProc is a procfs-shaped tree in a temporary directory.
type fakeProc struct {
	t    testing.TB
	root string
	bins string
}

type fakeProcess struct {
	PID, PPID int
	Start     uint64
	State     byte // default 'S'
	Comm      string
	UID, GID  int
	Exe       string // name of an executable created under bins (content: "binary:"+Exe)
	Args      []string
	Cgroup    string
	FDs       map[int]uint64 // fd → socket inode
}

func newFakeProc(t testing.TB) *fakeProc {
	d := t.TempDir()
	f := &fakeProc{t: t, root: filepath.Join(d, "proc"), bins: filepath.Join(d, "bin")}
	for _, p := range []string{f.root, f.bins, filepath.Join(f.root, "net")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fakeProc) write(path string, data string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// exePath returns the path of the fake executable name, creating it.
func (f *fakeProc) exePath(name string) string {
	p := filepath.Join(f.bins, name)
	if _, err := os.Stat(p); err != nil {
		f.write(p, "binary:"+name)
	}
	return p
}

// exeSum is the sha256 of the fake executable name.
func (f *fakeProc) exeSum(name string) string {
	b, err := os.ReadFile(f.exePath(name))
	if err != nil {
		f.t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (f *fakeProc) add(p fakeProcess) {
	f.t.Helper()
	dir := filepath.Join(f.root, strconv.Itoa(p.PID))
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if p.State == 0 {
		p.State = 'S'
	}
	if p.Comm == "" {
		p.Comm = p.Exe
	}
	f.writeStat(p)
	f.write(filepath.Join(dir, "status"), fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t%d\nPPid:\t%d\nUid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\n",
		p.Comm, p.PID, p.PPID, p.UID, p.UID, p.UID, p.UID, p.GID, p.GID, p.GID, p.GID))
	f.write(filepath.Join(dir, "cmdline"), strings.Join(p.Args, "\x00")+"\x00")
	f.write(filepath.Join(dir, "cgroup"), "0::"+p.Cgroup+"\n")
	if p.Exe != "" {
		if err := os.Symlink(f.exePath(p.Exe), filepath.Join(dir, "exe")); err != nil {
			f.t.Fatal(err)
		}
	}
	for fd, inode := range p.FDs {
		f.setFD(p.PID, fd, inode)
	}
	// Some non-socket fds, as real processes have.
	_ = os.Symlink("/dev/null", filepath.Join(dir, "fd", "0"))
	_ = os.Symlink("pipe:[77]", filepath.Join(dir, "fd", "1"))
}

// writeStat writes the stat files of p (PID/stat and its main thread's).
func (f *fakeProc) writeStat(p fakeProcess) {
	f.t.Helper()
	if p.State == 0 {
		p.State = 'S'
	}
	if p.Comm == "" {
		p.Comm = p.Exe
	}
	// Fields 1..22; 5..21 are zeros.
	fields := []string{strconv.Itoa(p.PID), "(" + p.Comm + ")", string(p.State), strconv.Itoa(p.PPID)}
	for i := 5; i <= 21; i++ {
		fields = append(fields, "0")
	}
	fields = append(fields, strconv.FormatUint(p.Start, 10), "12345", "0")
	dir := filepath.Join(f.root, strconv.Itoa(p.PID))
	f.write(filepath.Join(dir, "stat"), strings.Join(fields, " ")+"\n")
	f.write(filepath.Join(dir, "task", strconv.Itoa(p.PID), "stat"), strings.Join(fields, " ")+"\n")
}

func (f *fakeProc) setFD(pid, fd int, inode uint64) {
	f.t.Helper()
	p := filepath.Join(f.root, strconv.Itoa(pid), "fd", strconv.Itoa(fd))
	_ = os.Remove(p)
	if err := os.Symlink(fmt.Sprintf("socket:[%d]", inode), p); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeProc) closeFD(pid, fd int) {
	_ = os.Remove(filepath.Join(f.root, strconv.Itoa(pid), "fd", strconv.Itoa(fd)))
}

func (f *fakeProc) remove(pid int) {
	if err := os.RemoveAll(filepath.Join(f.root, strconv.Itoa(pid))); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeProc) removeFile(pid int, name string) {
	if err := os.Remove(filepath.Join(f.root, strconv.Itoa(pid), name)); err != nil {
		f.t.Fatal(err)
	}
}

// fakeSockets is a socket table kept as state.
type fakeSockets struct {
	mu    sync.Mutex
	socks map[fakeKey]sockInfo
	calls []fakeKey
	err   error
}

type fakeKey struct {
	proto         uint8
	local, remote netip.AddrPort
	listen        bool
}

func newFakeSockets() *fakeSockets { return &fakeSockets{socks: make(map[fakeKey]sockInfo)} }

func (s *fakeSockets) add(k fakeKey, inode uint64, uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.socks[k] = sockInfo{Family: afInet, Local: k.local, Remote: k.remote, UID: uid, Inode: inode}
}

func (s *fakeSockets) del(k fakeKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.socks, k)
}

func (s *fakeSockets) find(proto uint8, local, remote netip.AddrPort, _ uint32, listen bool) (sockInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := fakeKey{proto, local, remote, listen}
	if listen {
		k.remote = netip.AddrPort{}
	}
	s.calls = append(s.calls, k)
	if s.err != nil {
		return sockInfo{}, s.err
	}
	si, ok := s.socks[k]
	if !ok {
		return sockInfo{}, errNoSocket
	}
	return si, nil
}

func (s *fakeSockets) close() error { return nil }

// fakeEvents is a process event queue.
type fakeEvents struct {
	mu     sync.Mutex
	drains int // drain calls
	queue  []procEvent
	lost   bool
	ready  chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newFakeEvents() *fakeEvents {
	return &fakeEvents{ready: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (e *fakeEvents) push(evs ...procEvent) {
	e.mu.Lock()
	e.queue = append(e.queue, evs...)
	e.mu.Unlock()
	select {
	case e.ready <- struct{}{}:
	default:
	}
}

func (e *fakeEvents) drain(fn func(procEvent)) (bool, error) {
	e.mu.Lock()
	e.drains++
	q, lost := e.queue, e.lost
	e.queue, e.lost = nil, false
	e.mu.Unlock()
	for _, ev := range q {
		fn(ev)
	}
	return lost, nil
}

func (e *fakeEvents) wait() error {
	select {
	case <-e.ready:
		return nil
	case <-e.closed:
		return ErrClosed
	}
}

func (e *fakeEvents) interrupt()   { e.once.Do(func() { close(e.closed) }) }
func (e *fakeEvents) close() error { return nil }
