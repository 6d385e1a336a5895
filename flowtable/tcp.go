package flowtable

// tcp bits of Entry.tcp.
const (
	tcpSeenOut uint8 = 1 << iota // non-SYN, non-RST packet from the LAN
	tcpSeenIn                    // non-SYN, non-RST packet from the remote
	tcpFinOut                    // FIN from the LAN
	tcpFinIn                     // FIN from the remote
)

// tcpNext is the loose TCP state machine (see Table.Touch). It never
// rejects a packet: the table tracks state for timeouts, it does not
// firewall.
func tcpNext(st State, seen uint8, dir Dir, flags uint8) (State, uint8) {
	syn := flags&TCPFlagSYN != 0
	ack := flags&TCPFlagACK != 0
	if flags&TCPFlagRST != 0 {
		return StateClosed, 0
	}
	if syn {
		switch {
		case dir == DirOut && !ack && (st == StateNew || st == StateTimeWait || st == StateClosed):
			return StateSynSent, 0 // open, or reopen of a closed tuple
		case dir == DirIn && (st == StateNew || st == StateSynSent):
			return StateSynRecv, seen // SYN-ACK, or simultaneous open
		}
		return st, seen // retransmitted or out-of-place SYN
	}
	if dir == DirOut {
		seen |= tcpSeenOut
	} else {
		seen |= tcpSeenIn
	}
	if flags&TCPFlagFIN != 0 {
		if dir == DirOut {
			seen |= tcpFinOut
		} else {
			seen |= tcpFinIn
		}
		if st == StateClosed {
			return st, seen
		}
		if seen&(tcpFinOut|tcpFinIn) == tcpFinOut|tcpFinIn {
			return StateTimeWait, seen
		}
		return StateFinWait, seen
	}
	switch st {
	case StateSynRecv:
		if dir == DirOut && ack {
			return StateEstablished, seen
		}
	case StateNew, StateSynSent, StateClosed:
		if seen&(tcpSeenOut|tcpSeenIn) == tcpSeenOut|tcpSeenIn {
			return StateEstablished, seen &^ (tcpFinOut | tcpFinIn)
		}
	}
	return st, seen
}

// tcpClass is the timeout class of a TCP state.
func tcpClass(st State) uint8 {
	switch st {
	case StateEstablished:
		return classEstablished
	case StateClosed:
		return classClosed
	}
	return classTransitory
}
