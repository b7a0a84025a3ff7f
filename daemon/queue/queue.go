// Package queue reads packets from a netfilter queue (NFQUEUE) and sends the
// kernel its verdicts on them.
//
// It owns the NFQUEUE socket: binding the queue with copy-packet mode and the
// UID/GID, GSO and (optionally) fail-open flags, reading packet messages on
// one goroutine and handing each to a handler, and sending accept, drop or
// repeat-with-mark verdicts from any goroutine. It also reads the kernel's
// per-queue counters from /proc/net/netfilter/nfnetlink_queue.
//
// It must not decide anything, decode packets beyond what the kernel tells
// (see package packet), install netfilter rules (package netfilter does), or
// ever wait on a decision: the reader hands a packet to the handler and goes
// back to reading, so one packet held for a prompt never delays another.
package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// DefaultCopyRange is how many bytes of each packet the kernel copies to us
// when Config.CopyRange is 0: the whole IP packet up to 64 KiB, enough for
// any header chain and the largest DNS answer over UDP. (The kernel caps the
// range a little below 0xffff for its own attribute header.)
const DefaultCopyRange = 0xffff

// DefaultReadBuffer is the socket receive buffer asked for when
// Config.ReadBuffer is 0: room for bursts of queued packets.
const DefaultReadBuffer = 4 << 20

// Config says which queue to bind and how.
type Config struct {
	Num uint16 // queue number, as in `-j NFQUEUE --queue-num Num`
	// MaxQueueLen bounds the packets the kernel holds for us awaiting a
	// verdict; past it new packets are dropped (or accepted with FailOpen).
	// 0 is the kernel default (1024).
	MaxQueueLen uint32
	// FailOpen asks the kernel to accept packets when the queue is full
	// (NFQA_CFG_F_FAIL_OPEN) instead of dropping them.
	FailOpen bool
	// CopyRange is how many bytes of each packet are copied to us; 0 means
	// DefaultCopyRange.
	CopyRange uint32
	// ReadBuffer is the socket receive buffer in bytes; 0 means
	// DefaultReadBuffer.
	ReadBuffer int
	Logger     *slog.Logger // nil: discard
}

// Packet is one queued packet as the kernel handed it over.
type Packet struct {
	ID uint32 // packet id: answer it with Queue.Verdict
	// Payload is the IP packet (or its first CopyRange bytes), starting at
	// the IP header. It belongs to the handler: the reader never touches it
	// again (go-nfqueue copies it out of its receive buffer).
	Payload []byte
	// UID and GID of the socket that sent the packet; -1 when the kernel
	// gave none (no socket, e.g. forwarded or kernel-made packets, or the
	// UID/GID flag was refused: see Queue.Flags).
	UID, GID int64
	InDev    uint32    // input interface index; 0 when absent (output path)
	OutDev   uint32    // output interface index; 0 when absent (input path)
	Mark     uint32    // packet mark (skb->mark) when queued
	Time     time.Time // kernel timestamp when given, else when it was read
	// Received is when the reader took the packet from the kernel (a
	// reading of this machine's clock, with its monotonic part): the
	// packet was sent before it.
	Received time.Time
}

// VerdictKind is what the kernel does with a packet.
type VerdictKind uint8

const (
	// Accept lets the packet continue through netfilter after the queue rule.
	Accept VerdictKind = iota + 1
	// Drop discards the packet silently.
	Drop
	// Repeat re-runs the packet through the hook's chain from its start.
	// With a new mark this is how the daemon rejects: a rule before the
	// NFQUEUE rule matches the mark and rejects. Repeating without changing
	// anything the chain matches queues the packet again.
	Repeat
)

func (k VerdictKind) String() string {
	switch k {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Repeat:
		return "repeat"
	}
	return fmt.Sprintf("VerdictKind(%d)", uint8(k))
}

// Verdict is the decision sent for one packet. The zero value is invalid:
// a forgotten field must not silently accept or drop.
type Verdict struct {
	Kind VerdictKind
	// Mark replaces the packet's mark when SetMark is true. It is the whole
	// new mark, not bits to add: to keep the existing mark, pass
	// Packet.Mark | yourBits.
	Mark    uint32
	SetMark bool
}

func (v Verdict) String() string {
	if v.SetMark {
		return fmt.Sprintf("%s mark=%#x", v.Kind, v.Mark)
	}
	return v.Kind.String()
}

// Errors callers branch on.
var (
	// ErrClosed: the queue was closed.
	ErrClosed = errors.New("queue: closed")
	// ErrBadVerdict: the verdict's kind is not Accept, Drop or Repeat.
	ErrBadVerdict = errors.New("queue: invalid verdict")
	// ErrNoQueue: the queue is not bound in this network namespace.
	ErrNoQueue = errors.New("queue: no such queue bound")
	// ErrStatsFormat: a line of the queue statistics could not be read.
	ErrStatsFormat = errors.New("queue: malformed nfnetlink_queue line")
)

// Flag is a queue flag the kernel accepted (NFQA_CFG_F_*).
type Flag uint32

// The flags Open asks for; values as in the kernel's NFQA_CFG_F_*.
const (
	FlagFailOpen Flag = 1 << 0 // accept when the queue is full
	FlagGSO      Flag = 1 << 2 // take segmentation-offload packets whole
	FlagUIDGID   Flag = 1 << 3 // attach the socket's uid and gid
)

func (f Flag) String() string {
	var names []string
	for _, n := range []struct {
		f    Flag
		name string
	}{{FlagFailOpen, "fail-open"}, {FlagGSO, "gso"}, {FlagUIDGID, "uid-gid"}} {
		if f&n.f != 0 {
			names = append(names, n.name)
			f &^= n.f
		}
	}
	if f != 0 {
		names = append(names, fmt.Sprintf("%#x", uint32(f)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// flagFallbacks lists the flag sets to try, best first: every subset of want,
// ordered so that the more valuable flags are kept longest (fail-open is the
// user's choice of availability, uid/gid feeds attribution, GSO only saves
// the kernel some work).
func flagFallbacks(want Flag) []Flag {
	rank := []Flag{FlagFailOpen, FlagUIDGID, FlagGSO} // most valuable first
	var out []Flag
	for v := 1<<len(rank) - 1; v >= 0; v-- {
		var f Flag
		for i, r := range rank {
			if v&(1<<(len(rank)-1-i)) != 0 {
				f |= r
			}
		}
		if f&^want == 0 {
			out = append(out, f)
		}
	}
	return out
}
