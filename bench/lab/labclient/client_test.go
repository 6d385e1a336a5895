package labclient

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		in     string
		wantAP string
		wantM  string
		ok     bool
	}{
		{"100.64.1.2:40000 udp3.1", "100.64.1.2:40000", "udp3.1", true},
		{"10.77.0.1:7 tcp0.0\n", "10.77.0.1:7", "tcp0.0\n", true},
		{"garbage", "", "", false},
		{"1.2.3.4 x", "", "", false},
	}
	for _, tt := range tests {
		ap, m, ok := parseReply([]byte(tt.in))
		if ok != tt.ok {
			t.Errorf("parseReply(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			continue
		}
		if ok && (ap.String() != tt.wantAP || string(m) != tt.wantM) {
			t.Errorf("parseReply(%q) = %v, %q; want %s, %q", tt.in, ap, m, tt.wantAP, tt.wantM)
		}
	}
}

func TestMessage(t *testing.T) {
	f := &Flow{Proto: UDP, Index: 12}
	if got := string(message(nil, f, 3)); got != "udp12.3" {
		t.Errorf("message = %q, want udp12.3", got)
	}
}

func TestSummarize(t *testing.T) {
	a, b := netip.MustParseAddrPort("100.64.1.2:1000"), netip.MustParseAddrPort("100.64.2.2:1000")
	flows := []Flow{
		{Proto: TCP, Sent: 2, Replies: 2, Seen: []netip.AddrPort{a}},
		{Proto: UDP, Sent: 2, Replies: 2, Seen: []netip.AddrPort{a, b}},
		{Proto: UDP, Index: 1, Sent: 2, Replies: 1, Lost: 1, Seen: []netip.AddrPort{b}, Err: errors.New("lost")},
	}
	s := Summarize(flows)
	if s.Flows != 3 || s.OK != 2 || s.Failed != 1 || s.Moved != 1 {
		t.Errorf("summary = %+v", s)
	}
	if s.PerAddr[a.Addr()] != 2 || s.PerAddr[b.Addr()] != 1 {
		t.Errorf("per address = %v", s.PerAddr)
	}
	if s.FirstErr == nil || s.String() == "" {
		t.Errorf("first error %v, string %q", s.FirstErr, s.String())
	}
}
