package queue

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// StatsPath is the kernel's table of bound queues. It is per network
// namespace: reading it shows the queues of the reader's namespace.
const StatsPath = "/proc/net/netfilter/nfnetlink_queue"

// Stats are the kernel's counters for one bound queue.
type Stats struct {
	Num       uint16 // queue number
	PortID    uint32 // netlink port id of the process bound to it
	Waiting   uint32 // packets queued now, awaiting a verdict
	CopyMode  uint8  // 0 none, 1 meta, 2 packet
	CopyRange uint32 // bytes copied per packet
	// QueueDropped counts packets dropped because the queue was full. With
	// fail-open they are accepted unseen instead, and not counted.
	QueueDropped uint32
	// UserDropped counts packets dropped because the kernel could not send
	// them to us (socket receive buffer full); with fail-open they too are
	// accepted unseen and not counted.
	UserDropped uint32
	// IDSequence is the id of the last packet queued: packets seen since
	// the queue was bound.
	IDSequence uint32
}

// ParseStats reads the nfnetlink_queue table from r and returns the line of
// queue num, ErrNoQueue when there is none, or ErrStatsFormat (wrapped with
// the line) when that line is malformed. Lines of other queues are skipped
// unread.
//
// A line holds, separated by spaces: queue number, peer port id, packets
// waiting, copy mode, copy range, queue dropped, user dropped, id sequence,
// and a constant 1.
func ParseStats(r io.Reader, num uint16) (Stats, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 16)
		if err != nil || uint16(n) != num {
			continue
		}
		st, err := parseStatsFields(fields)
		if err != nil {
			return Stats{}, fmt.Errorf("%w: %q: %w", ErrStatsFormat, sc.Text(), err)
		}
		return st, nil
	}
	if err := sc.Err(); err != nil {
		return Stats{}, fmt.Errorf("read queue statistics: %w", err)
	}
	return Stats{}, fmt.Errorf("queue %d: %w", num, ErrNoQueue)
}

func parseStatsFields(f []string) (Stats, error) {
	if len(f) < 8 {
		return Stats{}, fmt.Errorf("%d fields, want at least 8", len(f))
	}
	var v [8]uint64
	for i := range v {
		bits := 32
		switch i {
		case 0:
			bits = 16
		case 3:
			bits = 8
		}
		n, err := strconv.ParseUint(f[i], 10, bits)
		if err != nil {
			return Stats{}, fmt.Errorf("field %d: %w", i+1, err)
		}
		v[i] = n
	}
	return Stats{
		Num:          uint16(v[0]),
		PortID:       uint32(v[1]),
		Waiting:      uint32(v[2]),
		CopyMode:     uint8(v[3]),
		CopyRange:    uint32(v[4]),
		QueueDropped: uint32(v[5]),
		UserDropped:  uint32(v[6]),
		IDSequence:   uint32(v[7]),
	}, nil
}
