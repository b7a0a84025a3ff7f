package store

import (
	"syscall"

	bbolt "go.etcd.io/bbolt"
)

// releaseMapped tells the kernel that this process no longer needs the
// pages of the file it has read through bbolt's memory map, so they leave
// its resident set (they stay in the page cache; a later read faults them
// back in). bbolt maps the file read-only and writes with pwrite, so
// nothing is lost. It runs inside a transaction, which holds bbolt's mmap
// lock: the mapping cannot move meanwhile.
func releaseMapped(tx *bbolt.Tx) error {
	size := uintptr(tx.Size())
	if size == 0 {
		return nil
	}
	_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, tx.DB().Info().Data, size, syscall.MADV_DONTNEED)
	if errno != 0 {
		return errno
	}
	return nil
}
