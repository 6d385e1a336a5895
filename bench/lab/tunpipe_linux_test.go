package lab

import (
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// checksum is the IPv4 header checksum of h (RFC 791), computed in full.
func checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i == 10 {
			continue
		}
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func TestIncTTL(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdr  string
	}{
		{"udp ttl 63", "450000544a2d40003f11" + "0000" + "0a4d000acb00710a"},
		{"tcp ttl 1", "4500003c1c4640000106" + "0000" + "ac100a0cac100a01"},
		{"carry", "4500ffffffffffff fe ff 0000 ffffffffffffffff"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := hex.DecodeString(stripSpaces(tt.hdr))
			if err != nil {
				t.Fatal(err)
			}
			binary.BigEndian.PutUint16(h[10:], checksum(h))
			ttl := h[8]
			incTTL(h)
			if h[8] != ttl+1 {
				t.Errorf("ttl = %d, want %d", h[8], ttl+1)
			}
			if got, want := binary.BigEndian.Uint16(h[10:]), checksum(h); got != want {
				t.Errorf("checksum = %#04x, want %#04x", got, want)
			}
		})
	}
}

func stripSpaces(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
}
