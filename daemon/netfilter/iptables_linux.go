package netfilter

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"

	"github.com/coreos/go-iptables/iptables"
)

// New returns a Manager for the configured backend, covering IPv4 and, when
// the kernel has an IPv6 stack, IPv6. If the kernel has IPv6 but ip6tables
// cannot be used it fails with ErrIPv6Unavailable rather than leave IPv6
// unfiltered. Nothing is installed until Install.
//
// The iptables commands wait at most opts.LockWait for the xtables lock
// (`--wait N`; only the legacy backend takes that lock).
func New(opts Options, log *slog.Logger) (*Manager, error) {
	return newWith(opts, log, environment{open: openIPTables, ipv6Enabled: kernelHasIPv6})
}

func openIPTables(command string, v6 bool, lockWaitSeconds int) (ruleTable, error) {
	proto := iptables.ProtocolIPv4
	if v6 {
		proto = iptables.ProtocolIPv6
	}
	return iptables.New(iptables.IPFamily(proto), iptables.Path(command), iptables.Timeout(lockWaitSeconds))
}

// kernelHasIPv6 reports whether the kernel runs an IPv6 stack: without one
// (ipv6.disable=1, or built without IPv6) there is no IPv6 traffic to
// filter. A stack with IPv6 turned off per interface (disable_ipv6) still
// counts, since it can be turned on again.
func kernelHasIPv6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return !errors.Is(err, fs.ErrNotExist)
}
