package packet

import "encoding/binary"

// Fragment splits the IPv4 datagram b (DF clear) into fragments of at most
// mtu bytes (RFC 791 §3.2, "Fragmentation"), writing fragment i into
// out[i][offset:] and its length into sizes[i], and returns the number of
// fragments. Offset is headroom the caller keeps in front of each packet, as
// in wireguard-go's tun.Device.Write. Every fragment's data except the last
// is a multiple of 8 bytes; the first keeps all IP options, the others only
// those with the copied flag (RFC 791 §3.1). A datagram that is itself a
// fragment is split into fragments of the same original datagram. A
// datagram that already fits is copied unchanged into out[0].
//
// ok is false, and the output is unusable, when b is not a well-formed IPv4
// datagram, when DF is set and b does not fit (answer with BuildICMPError
// 3/4 instead, RFC 1191), when mtu leaves no room for 8 data bytes, or when
// out, sizes or a buffer is too small. Fragment does not retain b or out.
func Fragment(b []byte, mtu int, out [][]byte, sizes []int, offset int) (n int, ok bool) {
	if len(b) < ipv4MinHeaderLen || b[0]>>4 != 4 || offset < 0 {
		return 0, false
	}
	ihl := int(b[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < ipv4MinHeaderLen || tl < ihl || tl > len(b) {
		return 0, false
	}
	b = b[:tl]
	if tl <= mtu {
		if len(out) < 1 || len(sizes) < 1 || len(out[0]) < offset+tl {
			return 0, false
		}
		sizes[0] = copy(out[0][offset:], b)
		return 1, true
	}
	ff := binary.BigEndian.Uint16(b[ipFlagsOff:])
	if ff&flagDF != 0 {
		return 0, false
	}
	// Header of the later fragments: the copied options only.
	hl2 := ipv4MinHeaderLen + copyOptions(nil, b[ipv4MinHeaderLen:ihl])
	firstData := (mtu - ihl) &^ 7
	restData := (mtu - hl2) &^ 7
	if firstData < 8 || restData < 8 {
		return 0, false
	}
	base := int(ff&fragOffMask) * 8
	keep := ff &^ (flagMF | fragOffMask) // reserved bit; DF is clear
	data := b[ihl:]
	for pos := 0; pos < len(data); n++ {
		hl, room := ihl, firstData
		if n > 0 {
			hl, room = hl2, restData
		}
		dl := min(room, len(data)-pos)
		if n >= len(out) || n >= len(sizes) || len(out[n]) < offset+hl+dl {
			return n, false
		}
		fo := (base + pos) / 8
		if fo > fragOffMask {
			return n, false
		}
		f := out[n][offset : offset+hl+dl]
		if n == 0 {
			copy(f, b[:ihl])
		} else {
			copy(f[:ipv4MinHeaderLen], b)
			f[0] = 0x40 | byte(hl2/4)
			copyOptions(f[ipv4MinHeaderLen:hl2], b[ipv4MinHeaderLen:ihl])
		}
		binary.BigEndian.PutUint16(f[2:], uint16(hl+dl))
		flags := keep | uint16(fo)
		if pos+dl < len(data) || ff&flagMF != 0 {
			flags |= flagMF
		}
		binary.BigEndian.PutUint16(f[ipFlagsOff:], flags)
		f[ipCsumOff], f[ipCsumOff+1] = 0, 0
		binary.BigEndian.PutUint16(f[ipCsumOff:], ^headerSum(f[:hl]))
		copy(f[hl:], data[pos:pos+dl])
		sizes[n] = hl + dl
		pos += dl
	}
	return n, true
}

// copyOptions writes the IP options of opts whose copied flag is set into
// dst (when dst is non-nil), pads them with end-of-list bytes to a multiple
// of 4, and returns the padded length. Malformed options end the list.
func copyOptions(dst, opts []byte) int {
	n := 0
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == 0 { // end of option list
			break
		}
		if t == 1 { // no-operation: not copied
			i++
			continue
		}
		if i+1 >= len(opts) {
			break
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			break
		}
		if t&0x80 != 0 {
			if dst != nil {
				copy(dst[n:], opts[i:i+l])
			}
			n += l
		}
		i += l
	}
	p := (n + 3) &^ 3
	if dst != nil {
		clear(dst[n:p])
	}
	return p
}
