//go:build linux

package main

// Blank imports that pin the project's dependencies in go.mod while the
// packages that use them are being written. Removed once each is imported
// for real.
import (
	_ "github.com/google/nftables"
	_ "github.com/insomniacslk/dhcp/dhcpv4"
	_ "github.com/mdlayher/packet"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.uber.org/goleak"
	_ "golang.org/x/net/bpf"
	_ "golang.org/x/sys/unix"
	_ "golang.zx2c4.com/wireguard/tun"
	_ "gopkg.in/yaml.v3"
	_ "gvisor.dev/gvisor/pkg/tcpip/header"
)
