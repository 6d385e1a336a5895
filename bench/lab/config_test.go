package lab

import (
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Uplinks) != 2 || cfg.Hosts != 1 || cfg.Prefix == "" {
		t.Errorf("defaults = %+v, want 2 uplinks, 1 host, a prefix", cfg)
	}
	l := describe(cfg)
	if got, want := len(l.Namespaces()), 3+2+1; got != want {
		t.Errorf("namespaces = %d, want %d", got, want)
	}
	if got := l.Uplinks[1]; got.Interface != "up2" || got.Addr.String() != "100.64.2.2" || got.Gateway.String() != "100.64.2.1" {
		t.Errorf("uplink 2 = %+v", got)
	}
	if got := l.Servers[19].String(); got != "203.0.113.29" {
		t.Errorf("last server = %s, want 203.0.113.29", got)
	}
}

func TestDefaultPrefixesDistinct(t *testing.T) {
	a, b := defaultPrefix(), defaultPrefix()
	if a == b || strings.HasPrefix(b, a) || strings.HasPrefix(a, b) {
		t.Errorf("default prefixes %q and %q overlap", a, b)
	}
	if !defaultPrefixRE.MatchString(a+"router") || !defaultPrefixRE.MatchString(b+"router") {
		t.Errorf("default prefixes %q, %q not recognised as stale candidates", a, b)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"two modems", Config{Uplinks: []UplinkSpec{{Kind: KindLANSegment}, {Kind: KindLANSegment}}}, "at most one"},
		{"modem mtu", Config{Uplinks: []UplinkSpec{{Kind: KindLANSegment, MTU: 1400}}}, "MTU is not supported"},
		{"bad kind", Config{Uplinks: []UplinkSpec{{Kind: 9}}}, "unknown kind"},
		{"tiny mtu", Config{Uplinks: []UplinkSpec{{MTU: 100}}}, "outside"},
		{"hosts", Config{Hosts: 91}, "hosts"},
		{"extra", Config{ExtraHostAddrs: 151}, "extra"},
		{"prefix", Config{Prefix: "a/b"}, "only letters"},
		{"uplinks", Config{Uplinks: make([]UplinkSpec, 33)}, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("withDefaults() error = %v, want containing %q", err, tt.want)
			}
		})
	}
}
