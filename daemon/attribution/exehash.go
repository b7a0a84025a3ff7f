package attribution

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// exeID identifies the contents of an executable file without reading it:
// a file with the same device, inode, size, modification time and status
// change time is taken to hold the same bytes. The change time is what
// makes it hold: the file's owner can rewrite it in place with the same
// size and set the modification time back (utimensat), but every write
// and every utimensat moves the change time to now, and nothing but the
// kernel's clock sets it.
type exeID struct {
	Dev, Ino uint64
	Size     int64
	Mtime    int64 // nanoseconds
	Ctime    int64 // nanoseconds
}

func exeIDOf(st *unix.Stat_t) exeID {
	return exeID{Dev: st.Dev, Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}

// hashCache holds the sha256 of executables by exeID. Concurrent requests
// for the same file share one read.
type hashCache struct {
	mu       sync.Mutex
	sums     *genCache[exeID, string]
	inflight map[exeID]*hashCall
}

type hashCall struct {
	done chan struct{}
	sum  string
	err  error
}

func newHashCache(max int) *hashCache {
	return &hashCache{sums: newGenCache[exeID, string](max), inflight: make(map[exeID]*hashCall)}
}

// sum returns the hex sha256 of the open file f and its identity. A file
// that changes while it is read is reported as an error, not cached.
func (h *hashCache) sum(f *os.File) (string, exeID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", exeID{}, fmt.Errorf("stat executable: %w", err)
	}
	id := exeIDOf(&st)
	h.mu.Lock()
	if s, ok := h.sums.get(id); ok {
		h.mu.Unlock()
		return s, id, nil
	}
	if c, ok := h.inflight[id]; ok {
		h.mu.Unlock()
		<-c.done
		return c.sum, id, c.err
	}
	c := &hashCall{done: make(chan struct{})}
	h.inflight[id] = c
	h.mu.Unlock()

	c.sum, c.err = hashFile(f, id)

	h.mu.Lock()
	delete(h.inflight, id)
	if c.err == nil {
		h.sums.put(id, c.sum)
	}
	h.mu.Unlock()
	close(c.done)
	return c.sum, id, c.err
}

func hashFile(f *os.File, id exeID) (string, error) {
	d := sha256.New()
	if _, err := io.Copy(d, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", fmt.Errorf("read executable: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("stat executable: %w", err)
	}
	if exeIDOf(&st) != id {
		return "", fmt.Errorf("executable changed while it was read")
	}
	return hex.EncodeToString(d.Sum(nil)), nil
}
