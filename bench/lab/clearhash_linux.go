package lab

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Why clear the hash: a veth pair keeps skb->hash, and a packet sent by a
// connected socket carries that socket's random sk_txhash marked as an L4
// hash. With fib_multipath_hash_policy 1 the router then hashes on the LAN
// host's socket, not on the 5-tuple, so two sockets reusing one 5-tuple can
// take different uplinks, which no router behind a real NIC (whose RSS hash
// is a function of the 5-tuple) does. A one-line tc program on the router's
// LAN ingress clears the hash, and the kernel recomputes it from the headers.

// bpfInsn is struct bpf_insn.
type bpfInsn struct {
	code uint8
	regs uint8 // dst:4, src:4
	off  int16
	imm  int32
}

// bpfProgLoadAttr is the head of union bpf_attr for BPF_PROG_LOAD.
type bpfProgLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
}

const bpfFuncSetHashInvalid = 41 // enum bpf_func_id

// loadClearHashProg loads a BPF_PROG_TYPE_SCHED_CLS program that calls
// bpf_set_hash_invalid(skb) and returns TC_ACT_OK. The caller owns the fd.
func loadClearHashProg() (int, error) {
	insns := []bpfInsn{
		{code: unix.BPF_JMP | unix.BPF_CALL, imm: bpfFuncSetHashInvalid}, // call bpf_set_hash_invalid (r1 = skb)
		{code: unix.BPF_ALU64 | unix.BPF_MOV | unix.BPF_K, imm: 0},       // r0 = TC_ACT_OK
		{code: unix.BPF_JMP | unix.BPF_EXIT},                             // exit
	}
	license := []byte("GPL\x00")
	attr := bpfProgLoadAttr{
		progType: unix.BPF_PROG_TYPE_SCHED_CLS,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	copy(attr.progName[:], "wflab_clrhash")
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		return -1, fmt.Errorf("lab: load BPF program: %w", errno)
	}
	return int(fd), nil
}

// attachClearHash adds a clsact qdisc to ifname in the calling thread's
// namespace with an ingress filter clearing every packet's hash.
func attachClearHash(ifname string) error {
	lk, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", ifname, err)
	}
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: lk.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
	if err := netlink.QdiscReplace(q); err != nil {
		return fmt.Errorf("lab: clsact on %s: %w", ifname, err)
	}
	fd, err := loadClearHashProg()
	if err != nil {
		return err
	}
	defer unix.Close(fd) // the filter holds its own reference
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: lk.Attrs().Index,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    1,
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           fd,
		Name:         "wflab_clrhash",
		DirectAction: true,
	}
	if err := netlink.FilterReplace(f); err != nil {
		return fmt.Errorf("lab: BPF filter on %s: %w", ifname, err)
	}
	return nil
}

// detachClearHash removes the clsact qdisc (and its filter) from ifname.
func detachClearHash(ifname string) error {
	lk, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", ifname, err)
	}
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: lk.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
	if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("lab: delete clsact on %s: %w", ifname, err)
	}
	return nil
}
