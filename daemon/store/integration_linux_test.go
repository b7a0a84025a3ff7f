package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tollgate-fw/tollgate/internal/nstest"
)

// inMountNamespace runs fn on a goroutine whose OS thread has a mount
// namespace of its own, so the mounts fn makes are seen by nobody else and
// vanish with the thread (it is never unlocked, so it exits with the
// goroutine). Being root does not get past a read-only mount or a full
// file system, which is why these tests mount instead of chmod.
func inMountNamespace(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare mount namespace: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make mounts private: %w", err)
			}
			return fn()
		}()
	}()
	return <-errc
}

func TestIntegrationReadOnlyDirectory(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.db")
	s := openT(t, Options{Path: existing})
	if err := s.PutRule(smallRule("a")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before := fileSum(t, existing)

	err := inMountNamespace(func() error {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount: %w", err)
		}
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount read-only: %w", err)
		}
		for _, path := range []string{filepath.Join(dir, "new.db"), existing} {
			s, err := Open(Options{Path: path}, testLogger(t))
			if err == nil {
				s.Close()
				return fmt.Errorf("Open(%s) on a read-only file system succeeded", path)
			}
			if !errors.Is(err, unix.EROFS) || !strings.Contains(err.Error(), path) {
				return fmt.Errorf("Open(%s): %v, want EROFS naming the file", path, err)
			}
			t.Logf("read-write open: %v", err)
		}
		// Read-only mode still reads it.
		s, err := Open(Options{Path: existing, ReadOnly: true}, testLogger(t))
		if err != nil {
			return fmt.Errorf("read-only Open: %w", err)
		}
		defer s.Close()
		rules, _, err := s.Rules()
		if err != nil || len(rules) != 1 {
			return fmt.Errorf("read-only Rules() = %v, %v", rules, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := fileSum(t, existing); before != after {
		t.Fatal("file changed")
	}
}

func TestIntegrationDiskFull(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	err := inMountNamespace(func() error {
		if err := unix.Mount("tollgate-test", dir, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
			return fmt.Errorf("mount tmpfs: %w", err)
		}
		path := filepath.Join(dir, "tollgate.db")
		s, err := Open(Options{Path: path, MaxLogEntries: 100}, testLogger(t))
		if err != nil {
			return err
		}
		var stored int
		var full error
		for i := range 1000 {
			r := smallRule(fmt.Sprintf("rule-%04d", i))
			r.Note = strings.Repeat("n", 1500)
			if full = s.PutRule(r); full != nil {
				break
			}
			stored++
		}
		if full == nil {
			s.Close()
			return errors.New("256 KiB never filled up")
		}
		if !errors.Is(full, unix.ENOSPC) || !strings.Contains(full.Error(), path) {
			s.Close()
			return fmt.Errorf("PutRule on a full disk: %v, want ENOSPC naming the file", full)
		}
		t.Logf("after %d rules: %v", stored, full)
		// What was acknowledged is there, now and after reopening (which
		// must not need to write).
		if rules, _, err := s.Rules(); err != nil || len(rules) != stored {
			s.Close()
			return fmt.Errorf("Rules() on a full disk: %d rules, %v; want %d", len(rules), err, stored)
		}
		if err := s.Close(); err != nil {
			return err
		}
		s, err = Open(Options{Path: path, MaxLogEntries: 100}, testLogger(t))
		if err != nil {
			return fmt.Errorf("reopen on a full disk: %w", err)
		}
		defer s.Close()
		if rules, _, err := s.Rules(); err != nil || len(rules) != stored {
			return fmt.Errorf("Rules() after reopen: %d rules, %v; want %d", len(rules), err, stored)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
