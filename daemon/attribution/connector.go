package attribution

import (
	"fmt"
)

// Wire format of the proc connector (linux/connector.h, linux/cn_proc.h).
const (
	cnIdxProc          = 1
	cnValProc          = 1
	sizeofCnMsg        = 20
	sizeofProcEventHdr = 16 // what, cpu, timestamp_ns
	procCnMcastListen  = 1

	procEventNone = 0x00000000
	procEventFork = 0x00000001
	procEventExec = 0x00000002
	procEventUID  = 0x00000004
	procEventGID  = 0x00000040
	procEventExit = 0x80000000
)

// procEvent is one process event the attributor cares about.
type procEvent struct {
	What uint32 // procEventExec, procEventExit, procEventUID, procEventGID, procEventNone (an ack)
	PID  int    // thread group id (the process id)
	TID  int    // thread id: for exit, the process ended only when TID == PID
	Seq  uint32 // for procEventNone: the cn_msg seq field (the request's)
	Ack  uint32 // for procEventNone: the cn_msg ack field (the request's + 1)
	Err  uint32 // for procEventNone: the ack's error
}

// parseConnectorMessages reads the netlink messages of one datagram from the
// proc connector and calls fn for each exec, exit, uid, gid and ack event.
// Other events (fork, comm, ptrace...) are skipped. It stops at the first malformed
// message and says what was wrong.
func parseConnectorMessages(b []byte, fn func(procEvent)) error {
	for len(b) > 0 {
		if len(b) < sizeofNlMsghdr {
			return fmt.Errorf("proc connector: %d trailing bytes", len(b))
		}
		l := native.Uint32(b[0:4])
		if l < sizeofNlMsghdr || uint64(l) > uint64(len(b)) {
			return fmt.Errorf("proc connector: message length %d of %d bytes", l, len(b))
		}
		typ := native.Uint16(b[4:6])
		body := b[sizeofNlMsghdr:l]
		next := nlAlign(l)
		if next > uint32(len(b)) {
			next = uint32(len(b))
		}
		b = b[next:]
		if typ != msgNlDone {
			// The connector sends every event as NLMSG_DONE; others
			// (NLMSG_NOOP, errors for our own sends) carry no event.
			continue
		}
		ev, ok, err := parseCnProcMsg(body)
		if err != nil {
			return err
		}
		if ok {
			fn(ev)
		}
	}
	return nil
}

// parseCnProcMsg reads one cn_msg carrying a proc_event.
func parseCnProcMsg(b []byte) (procEvent, bool, error) {
	if len(b) < sizeofCnMsg {
		return procEvent{}, false, fmt.Errorf("proc connector: cn_msg of %d bytes", len(b))
	}
	idx, val := native.Uint32(b[0:4]), native.Uint32(b[4:8])
	if idx != cnIdxProc || val != cnValProc {
		return procEvent{}, false, nil
	}
	seq, ack := native.Uint32(b[8:12]), native.Uint32(b[12:16])
	dlen := int(native.Uint16(b[16:18]))
	data := b[sizeofCnMsg:]
	if dlen > len(data) {
		return procEvent{}, false, fmt.Errorf("proc connector: cn_msg says %d data bytes, has %d", dlen, len(data))
	}
	data = data[:dlen]
	if len(data) < sizeofProcEventHdr {
		return procEvent{}, false, fmt.Errorf("proc connector: proc_event of %d bytes", len(data))
	}
	what := native.Uint32(data[0:4])
	ed := data[sizeofProcEventHdr:]
	need := 0
	switch what {
	case procEventNone:
		need = 4 // ack.err
	case procEventExec:
		need = 8 // process_pid, process_tgid
	case procEventExit:
		need = 8 // process_pid, process_tgid (then exit code, signal, parent)
	case procEventUID, procEventGID:
		need = 8 // process_pid, process_tgid (then real and effective id)
	default:
		return procEvent{}, false, nil
	}
	if len(ed) < need {
		return procEvent{}, false, fmt.Errorf("proc connector: event %#x with %d data bytes, want %d", what, len(ed), need)
	}
	ev := procEvent{What: what}
	switch what {
	case procEventNone:
		ev.Seq, ev.Ack = seq, ack
		ev.Err = native.Uint32(ed[0:4])
	default:
		ev.TID = int(native.Uint32(ed[0:4]))
		ev.PID = int(native.Uint32(ed[4:8]))
	}
	return ev, true, nil
}

// encodeListen builds the message that subscribes a connector socket to
// process events (PROC_CN_MCAST_LISTEN, all event types: the form every
// kernel accepts).
func encodeListen(seq uint32) []byte {
	b := make([]byte, sizeofNlMsghdr+sizeofCnMsg+4)
	native.PutUint32(b[0:4], uint32(len(b)))
	native.PutUint16(b[4:6], msgNlDone)
	native.PutUint32(b[8:12], seq)
	c := b[sizeofNlMsghdr:]
	native.PutUint32(c[0:4], cnIdxProc)
	native.PutUint32(c[4:8], cnValProc)
	native.PutUint32(c[8:12], seq)
	native.PutUint32(c[12:16], 0)
	native.PutUint16(c[16:18], 4)
	native.PutUint32(c[sizeofCnMsg:], procCnMcastListen)
	return b
}
