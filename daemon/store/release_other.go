//go:build !linux

package store

import bbolt "go.etcd.io/bbolt"

// releaseMapped is Linux-only (madvise); elsewhere the pages stay mapped.
func releaseMapped(*bbolt.Tx) error { return nil }
