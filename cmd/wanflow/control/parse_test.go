package control

import (
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParseFlowQuery(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    FlowFilter
		wantErr string // substring; "" for success
	}{
		{name: "empty", raw: "", want: FlowFilter{Limit: DefaultFlowLimit}},
		{name: "all", raw: "uplink=adsl&host=10.77.0.10&remote=203.0.113.5&proto=tcp&port=443&sort=bytes&limit=20",
			want: FlowFilter{Uplink: "adsl", Host: netip.MustParseAddr("10.77.0.10"), Remote: netip.MustParseAddr("203.0.113.5"),
				Proto: 6, Port: 443, Sort: "bytes", Limit: 20}},
		{name: "udp", raw: "proto=udp", want: FlowFilter{Proto: 17, Limit: DefaultFlowLimit}},
		{name: "icmp upper case", raw: "proto=ICMP", want: FlowFilter{Proto: 1, Limit: DefaultFlowLimit}},
		{name: "empty values mean any", raw: "uplink=&host=&proto=&port=&sort=&limit=", want: FlowFilter{Limit: DefaultFlowLimit}},
		{name: "limit 0 is default", raw: "limit=0", want: FlowFilter{Limit: DefaultFlowLimit}},
		{name: "limit max", raw: "limit=100000", want: FlowFilter{Limit: MaxFlowLimit}},
		{name: "sort packets", raw: "sort=packets", want: FlowFilter{Sort: "packets", Limit: DefaultFlowLimit}},
		{name: "sort age", raw: "sort=age", want: FlowFilter{Sort: "age", Limit: DefaultFlowLimit}},
		{name: "port 65535", raw: "port=65535", want: FlowFilter{Port: 65535, Limit: DefaultFlowLimit}},

		{name: "unknown parameter", raw: "colour=red", wantErr: `unknown parameter "colour"`},
		{name: "repeated parameter", raw: "port=1&port=2", wantErr: `parameter "port" given 2 times`},
		{name: "host not an address", raw: "host=router", wantErr: `host "router": not an IPv4 address`},
		{name: "host IPv6", raw: "host=2001:db8::1", wantErr: `host "2001:db8::1": not an IPv4 address`},
		{name: "remote 4in6", raw: "remote=::ffff:1.2.3.4", wantErr: `remote "::ffff:1.2.3.4": not an IPv4 address`},
		{name: "host prefix", raw: "host=10.0.0.0/8", wantErr: `host "10.0.0.0/8"`},
		{name: "proto", raw: "proto=sctp", wantErr: `proto "sctp": want tcp, udp or icmp`},
		{name: "port 0", raw: "port=0", wantErr: `port "0": not a port number`},
		{name: "port too big", raw: "port=65536", wantErr: `port "65536": not a port number`},
		{name: "port negative", raw: "port=-1", wantErr: `port "-1"`},
		{name: "port not a number", raw: "port=http", wantErr: `port "http"`},
		{name: "sort", raw: "sort=name", wantErr: `sort "name": want bytes, packets or age`},
		{name: "limit negative", raw: "limit=-1", wantErr: `limit -1: out of range`},
		{name: "limit too big", raw: "limit=100001", wantErr: `limit 100001: out of range`},
		{name: "limit not a number", raw: "limit=ten", wantErr: `limit "ten": not a number`},
		{name: "uplink with space", raw: "uplink=a+b", wantErr: `uplink "a b": not an uplink name`},
		{name: "uplink too long", raw: "uplink=" + strings.Repeat("a", 65), wantErr: `not an uplink name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.raw)
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", tt.raw, err)
			}
			got, err := ParseFlowQuery(v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFlowQuery(%q) error = %v, want one containing %q", tt.raw, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFlowQuery(%q): %v", tt.raw, err)
			}
			if got != tt.want {
				t.Fatalf("ParseFlowQuery(%q) = %+v, want %+v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestFlowQueryValues(t *testing.T) {
	tests := []struct {
		q    FlowQuery
		want string
	}{
		{FlowQuery{}, ""},
		{FlowQuery{Uplink: "4g", Host: "10.77.0.10", Remote: "1.1.1.1", Proto: "udp", Port: 53, Sort: "age", Limit: 5},
			"host=10.77.0.10&limit=5&port=53&proto=udp&remote=1.1.1.1&sort=age&uplink=4g"},
		{FlowQuery{Port: 443}, "port=443"},
	}
	for _, tt := range tests {
		if got := tt.q.Values().Encode(); got != tt.want {
			t.Errorf("%+v.Values() = %q, want %q", tt.q, got, tt.want)
		}
		f, err := ParseFlowQuery(tt.q.Values())
		if err != nil {
			t.Errorf("ParseFlowQuery(%+v.Values()): %v", tt.q, err)
			continue
		}
		back := flowQueryOf(f)
		if tt.q.Limit == 0 {
			back.Limit = 0
		}
		if back != tt.q {
			t.Errorf("round trip of %+v = %+v", tt.q, back)
		}
	}
}

func TestParseExplainQuery(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name    string
		raw     string
		want    FlowKey
		wantErr string
	}{
		{name: "tcp", raw: "proto=tcp&src=10.77.0.10:51000&dst=203.0.113.5:443",
			want: FlowKey{Proto: 6, Src: ap("10.77.0.10:51000"), Dst: ap("203.0.113.5:443")}},
		{name: "udp", raw: "proto=udp&src=10.77.0.10:5353&dst=1.1.1.1:53",
			want: FlowKey{Proto: 17, Src: ap("10.77.0.10:5353"), Dst: ap("1.1.1.1:53")}},
		{name: "icmp bare", raw: "proto=icmp&src=10.77.0.10&dst=8.8.8.8",
			want: FlowKey{Proto: 1, Src: ap("10.77.0.10:0"), Dst: ap("8.8.8.8:0")}},
		{name: "icmp id", raw: "proto=icmp&src=10.77.0.10:4711&dst=8.8.8.8",
			want: FlowKey{Proto: 1, Src: ap("10.77.0.10:4711"), Dst: ap("8.8.8.8:0")}},
		{name: "proto upper case", raw: "proto=TCP&src=10.0.0.1:1&dst=10.0.0.2:65535",
			want: FlowKey{Proto: 6, Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.2:65535")}},

		{name: "missing proto", raw: "src=10.0.0.1:1&dst=10.0.0.2:2", wantErr: `missing parameter "proto"`},
		{name: "missing src", raw: "proto=tcp&dst=10.0.0.2:2", wantErr: `missing parameter "src"`},
		{name: "empty dst", raw: "proto=tcp&src=10.0.0.1:1&dst=", wantErr: `missing parameter "dst"`},
		{name: "unknown parameter", raw: "proto=tcp&src=10.0.0.1:1&dst=10.0.0.2:2&uplink=a", wantErr: `unknown parameter "uplink"`},
		{name: "repeated parameter", raw: "proto=tcp&proto=udp&src=10.0.0.1:1&dst=10.0.0.2:2", wantErr: `parameter "proto" given 2 times`},
		{name: "bad proto", raw: "proto=gre&src=10.0.0.1&dst=10.0.0.2", wantErr: `proto "gre"`},
		{name: "tcp without port", raw: "proto=tcp&src=10.0.0.1&dst=10.0.0.2:80", wantErr: `src "10.0.0.1": tcp needs address:port`},
		{name: "udp dst without port", raw: "proto=udp&src=10.0.0.1:5&dst=10.0.0.2", wantErr: `dst "10.0.0.2": udp needs address:port`},
		{name: "tcp port 0", raw: "proto=tcp&src=10.0.0.1:0&dst=10.0.0.2:80", wantErr: `src "10.0.0.1:0": port 0`},
		{name: "tcp port too big", raw: "proto=tcp&src=10.0.0.1:65536&dst=10.0.0.2:80", wantErr: `src "10.0.0.1:65536": not an IPv4 address:port`},
		{name: "tcp IPv6", raw: "proto=tcp&src=[2001:db8::1]:80&dst=10.0.0.2:80", wantErr: `src "[2001:db8::1]:80": not an IPv4 address`},
		{name: "tcp garbage", raw: "proto=tcp&src=host:80&dst=10.0.0.2:80", wantErr: `src "host:80": not an IPv4 address:port`},
		{name: "icmp dst with port", raw: "proto=icmp&src=10.0.0.1&dst=10.0.0.2:7", wantErr: `dst "10.0.0.2:7": an icmp destination is an address without a port`},
		{name: "icmp IPv6", raw: "proto=icmp&src=2001:db8::1&dst=10.0.0.2", wantErr: `src "2001:db8::1": not an IPv4 address`},
		{name: "icmp id too big", raw: "proto=icmp&src=10.0.0.1:70000&dst=10.0.0.2", wantErr: `src "10.0.0.1:70000": not an IPv4 address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.raw)
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", tt.raw, err)
			}
			got, err := ParseExplainQuery(v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseExplainQuery(%q) error = %v, want one containing %q", tt.raw, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseExplainQuery(%q): %v", tt.raw, err)
			}
			if got != tt.want {
				t.Fatalf("ParseExplainQuery(%q) = %+v, want %+v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestParseExplainArgs(t *testing.T) {
	tests := []struct {
		args    []string
		want    ExplainQuery
		wantErr string
	}{
		{args: []string{"tcp", "192.168.1.20:51000", "203.0.113.5:443"}, want: ExplainQuery{"tcp", "192.168.1.20:51000", "203.0.113.5:443"}},
		{args: []string{"UDP", "10.77.0.10:053", "1.1.1.1:53"}, want: ExplainQuery{"udp", "10.77.0.10:53", "1.1.1.1:53"}},
		{args: []string{"icmp", "10.77.0.10", "8.8.8.8"}, want: ExplainQuery{"icmp", "10.77.0.10", "8.8.8.8"}},
		{args: []string{"icmp", "10.77.0.10:0", "8.8.8.8"}, want: ExplainQuery{"icmp", "10.77.0.10", "8.8.8.8"}},
		{args: []string{"icmp", "10.77.0.10:9", "8.8.8.8"}, want: ExplainQuery{"icmp", "10.77.0.10:9", "8.8.8.8"}},
		{args: nil, wantErr: "want 3 arguments"},
		{args: []string{"tcp", "10.0.0.1:1"}, wantErr: "want 3 arguments"},
		{args: []string{"tcp", "10.0.0.1:1", "10.0.0.2:2", "extra"}, wantErr: "want 3 arguments"},
		{args: []string{"tcp", "10.0.0.1", "10.0.0.2:2"}, wantErr: `src "10.0.0.1": tcp needs address:port`},
		{args: []string{"icmp", "10.0.0.1", "10.0.0.2:2"}, wantErr: `dst "10.0.0.2:2"`},
		{args: []string{"esp", "10.0.0.1", "10.0.0.2"}, wantErr: `proto "esp"`},
	}
	for _, tt := range tests {
		got, err := ParseExplainArgs(tt.args)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseExplainArgs(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseExplainArgs(%q): %v", tt.args, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseExplainArgs(%q) = %+v, want %+v", tt.args, got, tt.want)
		}
		if v := got.Values(); !reflect.DeepEqual(v, url.Values{"proto": {got.Proto}, "src": {got.Src}, "dst": {got.Dst}}) {
			t.Errorf("%+v.Values() = %v", got, v)
		}
	}
}

func TestErrorMessagesClipHostileInput(t *testing.T) {
	long := strings.Repeat("x", 10000) + "\x00"
	_, err := ParseFlowQuery(url.Values{"host": {long}})
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("ParseFlowQuery(long host) error = %.300v (len %d), want a short error", err, len(err.Error()))
	}
	_, err = ParseFlowQuery(url.Values{"\x00" + long: {"1"}})
	if err == nil || len(err.Error()) > 200 || strings.Contains(err.Error(), "\x00") {
		t.Fatalf("ParseFlowQuery(long key) error = %.300q, want a short escaped error", err)
	}
}
