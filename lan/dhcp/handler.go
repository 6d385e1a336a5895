package dhcp

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// destKind says how a reply reaches the client (RFC 2131 section 4.1).
type destKind uint8

const (
	// toBroadcast: UDP to 255.255.255.255:68.
	toBroadcast destKind = iota
	// toUnicast: UDP to ip:68; the client has configured ip (ciaddr), so
	// the kernel can resolve its link address with ARP.
	toUnicast
	// toHW: IPv4/UDP to ip:68 in a frame addressed to hw; the client does
	// not have ip yet and cannot answer ARP for it.
	toHW
)

// response is a reply and where to send it.
type response struct {
	msg  *dhcpv4.DHCPv4
	kind destKind
	ip   netip.Addr       // toUnicast, toHW
	hw   net.HardwareAddr // toHW
	src  netip.Addr       // source address for toHW (the server address)
}

// handlePacket decodes and handles one message received on the server
// port. It never panics on any input: malformed messages are counted and
// dropped. ok is false if nothing is to be sent. It must not retain b.
func (s *Server) handlePacket(b []byte) (r response, ok bool) {
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.stats.badPackets.Add(1)
		return response{}, false
	}
	return s.handle(req)
}

// handle runs the server side of RFC 2131 section 4.3 for one decoded
// message.
func (s *Server) handle(req *dhcpv4.DHCPv4) (response, bool) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) == 0 {
		s.stats.badPackets.Add(1)
		return response{}, false
	}
	if giaddr := ip4(req.GatewayIPAddr); giaddr.IsValid() && !giaddr.IsUnspecified() {
		// Relayed from another segment: wanflow serves only the directly
		// attached LAN, whose subnet the relay's clients are not on.
		s.stats.badPackets.Add(1)
		return response{}, false
	}
	c := client{mac: req.ClientHWAddr, hostname: clientHostname(req.Options.Get(dhcpv4.OptionHostName))}
	// RFC 2132 section 9.14: the client identifier has at least 2 bytes.
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); len(id) >= 2 {
		c.clientID = id
	}
	c.key = keyOf(c.mac, c.clientID)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		s.stats.discovers.Add(1)
		return s.discover(req, c, now)
	case dhcpv4.MessageTypeRequest:
		s.stats.requests.Add(1)
		return s.request(req, c, now)
	case dhcpv4.MessageTypeRelease:
		s.stats.releases.Add(1)
		s.releaseMsg(req, c, now)
		return response{}, false
	case dhcpv4.MessageTypeDecline:
		s.stats.declines.Add(1)
		s.declineMsg(req, c, now)
		return response{}, false
	case dhcpv4.MessageTypeInform:
		s.stats.informs.Add(1)
		return s.inform(req)
	default: // no type (BOOTP), or a server's message type
		s.stats.badPackets.Add(1)
		return response{}, false
	}
}

// discover answers DHCPDISCOVER with DHCPOFFER (RFC 2131 section 4.3.1).
func (s *Server) discover(req *dhcpv4.DHCPv4, c client, now time.Time) (response, bool) {
	a, ok := s.tab.pick(c, optIP(req, dhcpv4.OptionRequestedIPAddress), now)
	if !ok {
		s.stats.poolExhausted.Add(1)
		if allow, suppressed := s.exhaustedLog.allow(now); allow {
			s.log().Warn("dhcp: no address to offer: pool exhausted (or the client's reserved address is declined)",
				"mac", c.mac.String(), "pool", s.cfg.RangeStart.String()+"-"+s.cfg.RangeEnd.String(),
				"active_leases", s.tab.countActive(now), "suppressed", suppressed)
		}
		return response{}, false
	}
	s.tab.offer(c, a, now)
	s.stats.offers.Add(1)
	return s.respond(req, dhcpv4.MessageTypeOffer, a), true
}

// request answers DHCPREQUEST in its four forms (RFC 2131 section 4.3.2).
func (s *Server) request(req *dhcpv4.DHCPv4, c client, now time.Time) (response, bool) {
	sid := optIP(req, dhcpv4.OptionServerIdentifier)
	want := optIP(req, dhcpv4.OptionRequestedIPAddress)
	ciaddr := ip4(req.ClientIPAddr)
	if ciaddr.IsUnspecified() {
		ciaddr = netip.Addr{}
	}
	switch {
	case sid.IsValid(): // SELECTING: the client chose an offer.
		if sid != s.cfg.ServerAddr {
			s.tab.forgetOffer(c)
			return response{}, false
		}
		if !want.IsValid() {
			want = ciaddr
		}
		if !want.IsValid() {
			s.stats.badPackets.Add(1)
			return response{}, false
		}
		return s.ackOrNak(req, c, want, now)
	case ciaddr.IsValid(): // RENEWING (unicast) or REBINDING (broadcast).
		if !s.cfg.Subnet.Contains(ciaddr) {
			return s.nak(req, "address not on this network"), true
		}
		return s.ackOrNak(req, c, ciaddr, now)
	case want.IsValid(): // INIT-REBOOT: the client verifies a remembered lease.
		if !s.cfg.Subnet.Contains(want) {
			return s.nak(req, "address not on this network"), true
		}
		var mine bool
		if r, ok := s.tab.resByMAC[string(c.mac)]; ok {
			mine = r.Addr == want
		} else if b := s.tab.byClient[c.key]; b != nil {
			mine = b.addr == want
		} else {
			// "If the DHCP server has no record of this client, then it
			// MUST remain silent" (section 4.3.2).
			return response{}, false
		}
		if !mine {
			return s.nak(req, "not your lease"), true
		}
		return s.ackOrNak(req, c, want, now)
	default:
		s.stats.badPackets.Add(1)
		return response{}, false
	}
}

// ackOrNak leases a to c and acknowledges, or refuses with DHCPNAK if a is
// not c's to have.
func (s *Server) ackOrNak(req *dhcpv4.DHCPv4, c client, a netip.Addr, now time.Time) (response, bool) {
	if !s.tab.canBind(c, a, now) {
		return s.nak(req, "requested address not available"), true
	}
	prev := s.tab.byAddr[a]
	renewal := prev != nil && prev.key == c.key && prev.active(now)
	b := s.tab.bind(c, a, now)
	s.markDirty()
	if renewal {
		s.log().Debug("dhcp: lease renewed", "addr", a.String(), "mac", c.mac.String(), "hostname", b.hostname)
	} else {
		s.log().Info("dhcp: lease granted", "addr", a.String(), "mac", c.mac.String(), "hostname", b.hostname, "expiry", b.expiry)
	}
	s.stats.acks.Add(1)
	return s.respond(req, dhcpv4.MessageTypeAck, a), true
}

// releaseMsg handles DHCPRELEASE (RFC 2131 section 4.3.4).
func (s *Server) releaseMsg(req *dhcpv4.DHCPv4, c client, now time.Time) {
	if sid := optIP(req, dhcpv4.OptionServerIdentifier); sid.IsValid() && sid != s.cfg.ServerAddr {
		return
	}
	a := ip4(req.ClientIPAddr)
	if s.tab.release(c, a, now) {
		s.markDirty()
		s.log().Info("dhcp: lease released", "addr", a.String(), "mac", c.mac.String())
	}
}

// declineMsg handles DHCPDECLINE (RFC 2131 section 4.3.3): the client
// found the address in use, so it leaves the pool for declineHold.
func (s *Server) declineMsg(req *dhcpv4.DHCPv4, c client, now time.Time) {
	if sid := optIP(req, dhcpv4.OptionServerIdentifier); sid.IsValid() && sid != s.cfg.ServerAddr {
		return
	}
	a := optIP(req, dhcpv4.OptionRequestedIPAddress)
	if s.tab.decline(c, a, now) {
		s.markDirty()
		s.log().Warn("dhcp: address declined by client, another host may use it; not offered for a while",
			"addr", a.String(), "mac", c.mac.String(), "hold", declineHold)
	}
}

// inform answers DHCPINFORM with configuration and no lease (RFC 2131
// section 4.3.5).
func (s *Server) inform(req *dhcpv4.DHCPv4) (response, bool) {
	ciaddr := ip4(req.ClientIPAddr)
	if ciaddr.IsValid() && !ciaddr.IsUnspecified() && !s.cfg.Subnet.Contains(ciaddr) {
		return response{}, false
	}
	s.stats.acks.Add(1)
	return s.respond(req, dhcpv4.MessageTypeAck, netip.Addr{}), true
}

// nak builds a DHCPNAK, always broadcast (RFC 2131 section 4.1: the client
// may not have a usable address).
func (s *Server) nak(req *dhcpv4.DHCPv4, why string) response {
	s.stats.naks.Add(1)
	m := s.newReply(req, dhcpv4.MessageTypeNak, netip.Addr{})
	m.UpdateOption(dhcpv4.OptMessage(why))
	s.log().Debug("dhcp: nak", "mac", req.ClientHWAddr.String(), "reason", why)
	return response{msg: m, kind: toBroadcast}
}

// respond builds an OFFER or ACK carrying yiaddr (zero for INFORM) and
// picks its destination (RFC 2131 section 4.1): ciaddr if the client has
// one; broadcast if the client asked for it; else unicast to chaddr and
// yiaddr without ARP, which needs an Ethernet-like chaddr.
func (s *Server) respond(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, yiaddr netip.Addr) response {
	m := s.newReply(req, mt, yiaddr)
	if ci := ip4(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		m.ClientIPAddr = ci.AsSlice()
		return response{msg: m, kind: toUnicast, ip: ci}
	}
	if req.IsBroadcast() || !yiaddr.IsValid() || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return response{msg: m, kind: toBroadcast}
	}
	return response{msg: m, kind: toHW, ip: yiaddr, hw: req.ClientHWAddr, src: s.cfg.ServerAddr}
}

// newReply builds a reply to req of type mt with the options of the
// configuration (Table 3 of RFC 2131 for the fixed fields).
func (s *Server) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, yiaddr netip.Addr) *dhcpv4.DHCPv4 {
	cfg := s.cfg
	m := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  bytes.Clone(req.ClientHWAddr),
		Options:       make(dhcpv4.Options),
	}
	if yiaddr.IsValid() {
		m.YourIPAddr = yiaddr.AsSlice()
	}
	m.UpdateOption(dhcpv4.OptMessageType(mt))
	m.UpdateOption(dhcpv4.OptServerIdentifier(cfg.ServerAddr.AsSlice()))
	if mt != dhcpv4.MessageTypeNak {
		m.UpdateOption(dhcpv4.OptSubnetMask(maskOf(cfg.Subnet)))
		m.UpdateOption(dhcpv4.OptBroadcastAddress(broadcastOf(cfg.Subnet).AsSlice()))
		m.UpdateOption(dhcpv4.OptRouter(cfg.Router.AsSlice()))
		dns := make([]net.IP, len(cfg.DNS))
		for i, a := range cfg.DNS {
			dns[i] = a.AsSlice()
		}
		m.UpdateOption(dhcpv4.OptDNS(dns...))
		if cfg.Domain != "" {
			m.UpdateOption(dhcpv4.OptDomainName(cfg.Domain))
		}
		if yiaddr.IsValid() { // not for INFORM (section 4.3.5)
			m.UpdateOption(dhcpv4.OptIPAddressLeaseTime(cfg.LeaseTime))
			m.UpdateOption(dhcpv4.OptRenewTimeValue(cfg.LeaseTime / 2))
			m.UpdateOption(dhcpv4.OptRebindingTimeValue(cfg.LeaseTime / 8 * 7))
		}
	}
	// RFC 6842: echo the client identifier.
	if v := req.Options.Get(dhcpv4.OptionClientIdentifier); v != nil {
		m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, bytes.Clone(v)))
	}
	return m
}

// ip4 converts a 4-byte header field to an Addr (invalid if malformed).
func ip4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// optIP returns the IPv4 address carried by option code, or the zero Addr
// if it is absent or not 4 bytes long.
func optIP(req *dhcpv4.DHCPv4, code dhcpv4.OptionCode) netip.Addr {
	v := req.Options.Get(code)
	if len(v) != 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(v))
}

// logLimiter lets one log line through per period and counts the others.
// It is not safe for concurrent use.
type logLimiter struct {
	period     time.Duration
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.period && now.After(l.last) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// log returns the configured logger; the caller holds s.mu.
func (s *Server) log() *slog.Logger { return s.cfg.Logger }
