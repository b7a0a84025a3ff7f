//go:build !linux

package netfilter

import (
	"errors"
	"log/slog"
)

// New fails: netfilter exists only on Linux.
func New(opts Options, log *slog.Logger) (*Manager, error) {
	return nil, errors.ErrUnsupported
}
