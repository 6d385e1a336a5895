package flowtable

import (
	"errors"
	"time"
)

// IP protocol numbers of the flows the table tracks.
const (
	// ProtoICMP is ICMP (echo request/reply flows, NATed by identifier).
	ProtoICMP uint8 = 1
	// ProtoTCP is TCP.
	ProtoTCP uint8 = 6
	// ProtoUDP is UDP.
	ProtoUDP uint8 = 17
)

// TCP header flag bits, as found in byte 13 of the TCP header. Touch takes
// that byte unchanged.
const (
	// TCPFlagFIN is the FIN flag.
	TCPFlagFIN uint8 = 0x01
	// TCPFlagSYN is the SYN flag.
	TCPFlagSYN uint8 = 0x02
	// TCPFlagRST is the RST flag.
	TCPFlagRST uint8 = 0x04
	// TCPFlagPSH is the PSH flag.
	TCPFlagPSH uint8 = 0x08
	// TCPFlagACK is the ACK flag.
	TCPFlagACK uint8 = 0x10
)

// MaxCapacity is the largest Config.Capacity New accepts.
const MaxCapacity = 1 << 24

// DefaultPorts returns the NAT port range used when Config.Ports is zero,
// 20000-32767. It must not overlap the kernel's ip_local_port_range.
func DefaultPorts() PortRange { return PortRange{Lo: 20000, Hi: 32767} }

// Errors returned by Table methods and New; test them with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every error New returns.
	ErrInvalidConfig = errors.New("flowtable: invalid config")
	// ErrPortsExhausted means the (uplink, proto) pool of this worker's NAT
	// port partition has no free port. Counted in Stats.PortsExhausted.
	ErrPortsExhausted = errors.New("flowtable: NAT ports exhausted")
	// ErrFull means the table is at capacity and eviction could not make
	// room. Counted in Stats.Full.
	ErrFull = errors.New("flowtable: table full")
	// ErrExists means a flow with the same key (or reply key) already exists.
	ErrExists = errors.New("flowtable: flow exists")
	// ErrProto means the protocol is not TCP, UDP or ICMP.
	ErrProto = errors.New("flowtable: unsupported protocol")
	// ErrUplink means the uplink index is not below Config.MaxUplinks.
	ErrUplink = errors.New("flowtable: uplink index out of range")
	// ErrNoEntry means the entry is not a live flow of this table.
	ErrNoEntry = errors.New("flowtable: entry not in table")
	// ErrHostLimit means the flow's LAN host (Key.Src) already has
	// Config.MaxFlowsPerHost flows in this table. Counted in
	// Stats.HostLimited.
	ErrHostLimit = errors.New("flowtable: per-host flow limit reached")
)

// Key is the LAN-side 5-tuple of a flow, as seen on packets from the LAN host
// (before source NAT). For ICMP echo, SrcPort is the echo identifier and
// DstPort is 0.
type Key struct {
	Src, Dst         [4]byte
	SrcPort, DstPort uint16
	Proto            uint8
	_                [3]byte // 16 bytes: copied with one store, so no store-forwarding stalls
}

// ReplyKey is how a packet from the internet finds its flow: the remote
// endpoint it came from, the NAT port it was sent to and the uplink and
// protocol it arrived on. Because it names the remote address and port,
// filtering is address-and-port-dependent (RFC 4787 §5): a packet from any
// other remote finds nothing. For ICMP echo replies RemotePort is 0 and
// NATPort is the translated echo identifier.
type ReplyKey struct {
	Remote              [4]byte
	RemotePort, NATPort uint16
	Uplink, Proto       uint8
	_                   [2]byte // 12 bytes, see Key
}

// Dir is the direction of a packet relative to the LAN.
type Dir uint8

const (
	// DirOut is LAN → internet. Any Dir other than DirIn counts as DirOut.
	DirOut Dir = 0
	// DirIn is internet → LAN (replies).
	DirIn Dir = 1
)

// String returns "out" or "in".
func (d Dir) String() string {
	if d == DirIn {
		return "in"
	}
	return "out"
}

// State is the tracking state of a flow. UDP and ICMP flows are StateNew
// until the first reply, then StateActive. TCP flows follow a loose,
// conntrack-like state machine (see Table.Touch).
type State uint8

const (
	// StateNew is a flow just created, or a UDP/ICMP flow with no reply yet,
	// or a TCP flow picked up without a SYN that has not seen a reply yet.
	StateNew State = iota
	// StateActive is a UDP or ICMP flow that has seen a reply.
	StateActive
	// StateSynSent is a TCP flow whose LAN host sent a SYN.
	StateSynSent
	// StateSynRecv is a TCP flow that saw the SYN-ACK (or a simultaneous-open
	// SYN) from the remote and waits for the LAN host's final ACK.
	StateSynRecv
	// StateEstablished is a TCP flow with a completed handshake, or with
	// non-SYN traffic seen in both directions.
	StateEstablished
	// StateFinWait is a TCP flow in which one side sent a FIN.
	StateFinWait
	// StateTimeWait is a TCP flow in which both sides sent a FIN.
	StateTimeWait
	// StateClosed is a TCP flow that saw a RST.
	StateClosed
)

var stateNames = [...]string{
	StateNew:         "new",
	StateActive:      "active",
	StateSynSent:     "syn-sent",
	StateSynRecv:     "syn-recv",
	StateEstablished: "established",
	StateFinWait:     "fin-wait",
	StateTimeWait:    "time-wait",
	StateClosed:      "closed",
}

// String returns the state's lower-case name, or "invalid".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// Timeouts are the idle timeouts of the timeout classes. A zero field means
// the DefaultTimeouts value.
type Timeouts struct {
	// UDP is the UDP idle timeout. RFC 4787 REQ-5: MUST NOT be less than
	// 2 min, RECOMMENDED 5 min.
	UDP time.Duration
	// TCPEstablished is the idle timeout of established TCP flows.
	// RFC 5382 REQ-5: MUST NOT be less than 2 h 4 min.
	TCPEstablished time.Duration
	// TCPTransitory is the idle timeout of TCP flows that are opening
	// (new, SYN seen) or closing (FIN seen). RFC 5382 REQ-5: MUST NOT be
	// less than 4 min.
	TCPTransitory time.Duration
	// ICMP is the idle timeout of ICMP echo flows. RFC 5508 REQ-1: MUST NOT
	// be less than 60 s.
	ICMP time.Duration
	// TCPClosed is the idle timeout of TCP flows after a RST. RFC 7857 §2.2
	// recommends keeping the session 4 min after a RST (a RST may be lost or
	// spoofed); Linux conntrack uses 10 s.
	TCPClosed time.Duration
}

// DefaultTimeouts returns the RFC-conformant defaults: UDP 5 min, TCP
// established 2 h 4 min, TCP transitory 4 min, ICMP 60 s, TCP closed 4 min.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		UDP:            5 * time.Minute,
		TCPEstablished: 2*time.Hour + 4*time.Minute,
		TCPTransitory:  4 * time.Minute,
		ICMP:           60 * time.Second,
		TCPClosed:      4 * time.Minute,
	}
}

// PortRange is an inclusive range of NAT ports (and ICMP echo identifiers).
type PortRange struct {
	Lo, Hi uint16
}

// Config configures a Table.
type Config struct {
	// Capacity is the hard maximum number of flows, 1..MaxCapacity.
	Capacity int
	// Timeouts are the idle timeouts; zero fields take DefaultTimeouts.
	Timeouts Timeouts
	// Ports is the NAT port range shared by all workers; zero means
	// DefaultPorts. Lo must be at least 1.
	Ports PortRange
	// Worker is this table's worker number, 0 <= Worker < Workers. The table
	// allocates only NAT ports p with p % Workers == Worker.
	Worker int
	// Workers is the number of dataplane workers (at least 1).
	Workers int
	// MaxUplinks bounds the uplink indexes (0..MaxUplinks-1), 1..256.
	MaxUplinks int
	// MaxFlowsPerHost bounds the flows of one LAN host (Key.Src) in this
	// table, so one host (a compromised or misbehaving machine opening
	// connections in a loop) cannot take the table from the others: Create
	// fails with ErrHostLimit instead of evicting their flows. 0 means no
	// limit (and no per-host counting); it must not be negative. The
	// limit is per Table: the dataplane gives each of its W tables a share
	// of its own limit (see dataplane.Config.Flows).
	MaxFlowsPerHost int
}

// Entry is one flow. Fields other than Decision are owned by the Table and
// must be treated as read-only; Decision is the caller's. An *Entry is valid
// until the flow is removed, expired or evicted (see the package doc).
type Entry struct {
	// Key is the LAN-side 5-tuple.
	Key Key
	// Uplink is the index of the uplink the flow is pinned to.
	Uplink uint8
	// State is the flow's tracking state.
	State State
	// NATAddr is the source address the flow is translated to (the
	// uplink's address when the flow was created or repinned).
	NATAddr [4]byte
	// NATPort is the translated source port (ICMP: echo identifier).
	NATPort uint16

	class uint8 // timeout class; classFree when the slot is free
	tcp   uint8 // tcpSeen* bits

	// Decision is opaque to the table: the caller records why this uplink
	// was chosen.
	Decision uint32
	// RemoteSeq is opaque to the table: for TCP the dataplane records the
	// next sequence number the LAN host expects from the remote end (the
	// end of the last segment that came in), so it can reset the LAN host's
	// connection with an RST it accepts (RFC 5961 §3.2: the sequence number
	// must match exactly) when the flow's uplink dies.
	RemoteSeq uint32

	idx     int32 // arena index of this entry
	prev    int32 // LRU list links (arena indexes, -1 = none); next is
	next    int32 // also the free-list link
	mapping int32 // NAT mapping index

	// Created is the now passed to Create.
	Created int64
	// LastSeen is the now of the last Touch (or Create).
	LastSeen int64
	// PacketsOut and BytesOut count LAN → internet traffic.
	PacketsOut, BytesOut uint64
	// PacketsIn and BytesIn count internet → LAN traffic.
	PacketsIn, BytesIn uint64
}

// ReplyKey returns the key under which replies to the flow are found.
func (e *Entry) ReplyKey() ReplyKey {
	return ReplyKey{
		Remote:     e.Key.Dst,
		RemotePort: e.Key.DstPort,
		NATPort:    e.NATPort,
		Uplink:     e.Uplink,
		Proto:      e.Key.Proto,
	}
}

// Stats are a Table's counters and gauges.
type Stats struct {
	// Flows is the number of flows in the table (Len).
	Flows uint64
	// PortsInUse is the number of live NAT mappings, each holding one port.
	PortsInUse uint64
	// Created counts flows created.
	Created uint64
	// Expired counts flows removed by Expire.
	Expired uint64
	// Evicted counts flows evicted by Create at capacity.
	Evicted uint64
	// Removed counts flows removed by Remove.
	Removed uint64
	// Repinned counts flows moved to another uplink by Repin.
	Repinned uint64
	// PortsExhausted counts Create and Repin calls that failed with
	// ErrPortsExhausted.
	PortsExhausted uint64
	// Full counts Create calls that failed with ErrFull.
	Full uint64
	// PortsPreserved counts NAT mappings that kept the LAN source port.
	PortsPreserved uint64
	// HostLimited counts Create calls that failed with ErrHostLimit.
	HostLimited uint64
}
